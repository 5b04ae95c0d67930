"""pdm-edge: predictive maintenance for rotating machinery, at the edge."""

__version__ = "0.1.0"
__all__ = ["__version__"]
