"""pdm-edge: predictive maintenance for rotating machinery, at the edge."""

import os

# onnxruntime's Linux wheel records a device id under ~/.cache and sends usage telemetry
# unless told not to; an appliance on a plant network must not (set before it is imported).
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

__version__ = "0.1.0"
__all__ = ["__version__"]
