"""pdm-edge: predictive maintenance for rotating machinery, at the edge."""

import os

# onnxruntime's Linux wheel records a device id under ~/.cache and sends usage telemetry
# unless told not to; an appliance on a plant network must not (set before it is imported).
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

__version__ = "0.1.0"
__all__ = ["__version__", "tune_for_streaming"]


def tune_for_streaming() -> None:
    r"""Settle this process (and the processes it starts) for steady windows-per-second work.

    Two measured costs that have nothing to do with the arithmetic:

    - **One BLAS thread.** OpenBLAS (numpy's matmuls in the DSP core) starts a thread per
      core for matrices the size of a batch of windows, and its idle threads spin: in a
      service that already runs a process per core they took the other core's time (CPU
      per window 2.2 ms with them, 0.94 ms without).
    - **Big buffers stay in the heap.** glibc serves blocks above its mmap threshold
      (128 kB to start) with fresh ``mmap``\ s and returns freed heap tops to the system;
      a batch of windows is megabytes of fresh arrays, so every pass paid page faults on
      memory it had just given back — a pass of 8 windows cost 2.5x what it costs with the
      memory kept (``mallopt``: mmap threshold 32 MB, trim threshold 256 MB).

    The benchmark's "per core" figures are measured under the same settings.
    """
    import contextlib
    import ctypes

    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    os.environ["MALLOC_MMAP_THRESHOLD_"] = str(32 << 20)
    os.environ["MALLOC_TRIM_THRESHOLD_"] = str(256 << 20)
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to tune
        libc = ctypes.CDLL(None)
        libc.mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD (also ends its dynamic adjustment)
        libc.mallopt(-1, 256 << 20)  # M_TRIM_THRESHOLD
    from threadpoolctl import threadpool_limits

    threadpool_limits(1, user_api="blas")
