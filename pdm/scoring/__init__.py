"""Anomaly scoring: learn a machine's healthy baseline, export it to ONNX, score windows.

Convention, stated once: a score is a non-negative float, **higher is more
anomalous**, and it is normalised so that the alert threshold is exactly 1.0
(the danger threshold, from the model card, is above it).
"""
