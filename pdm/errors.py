"""The one exception tree of pdm-edge.

Every error a user can cause ends in one of these, with a one-line message
that names *what* and *where* (file, line, column, key path). The CLI prints
``str(exc)`` and exits non-zero; it never shows a traceback for these.

::

    PdmError                      base; ``retryable`` says whether trying again may help
    ├── ConfigError               a pipeline file or a quick flag is wrong (permanent)
    ├── InputError                a recording cannot be read as asked (permanent)
    │   └── CsvError              a CSV line, cell or column is bad; names file:line:column
    ├── DspError                  parameters the DSP core cannot honour (permanent)
    ├── ModelError                a model directory is missing, corrupt, tampered with,
    │                             or does not fit the pipeline (permanent)
    ├── HistoryError              a history store cannot write or read (pdm.history.base;
    │                             retryable when the server is down or slow)
    └── OutboxError               the webhook outbox's disk refuses (pdm.actions.outbox;
                                  retryable)

Lower-level exceptions (``OSError``, ``ValueError`` from parsers, pydantic's
``ValidationError``) are translated at the boundary with ``raise X(...) from exc``.
"""

from __future__ import annotations

__all__ = ["ConfigError", "CsvError", "DspError", "InputError", "ModelError", "PdmError"]


class PdmError(Exception):
    """Base of every error pdm-edge raises on purpose."""

    retryable: bool = False


class ConfigError(PdmError):
    """A pipeline file or command-line option is invalid."""


class InputError(PdmError):
    """A recording or stream cannot be read as asked."""


class CsvError(InputError):
    """A CSV recording has a bad line, cell or column.

    The message has the form ``FILE:LINE:COLUMN: reason`` (LINE is 1-based, as an
    editor shows it; COLUMN is the header name where there is one).
    """

    def __init__(self, path: str, line: int | None, column: str | None, reason: str) -> None:
        where = str(path)
        if line is not None:
            where += f":{line}"
        if column is not None:  # a header name from outside: shown in part when long
            shown = column if len(column) <= 40 else column[:40] + "…"
            where += f": column {shown!r}"
        super().__init__(f"{where}: {reason}")
        self.path = str(path)
        self.line = line
        self.column = column
        self.reason = reason


class DspError(PdmError):
    """DSP parameters that cannot work (e.g. a band above Nyquist)."""


class ModelError(PdmError):
    """A model cannot be trained, loaded or used as asked; the message says what differs."""
