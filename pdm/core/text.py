"""Text from outside in names, logs, audit records and one-line errors.

Characters that text from outside must not carry into names, logs and audit records:

Bidirectional and zero-width formatting (Unicode's "Trojan Source" characters) make a string
read as another: ``"\\u202enomis"`` is shown as ``simon``, and a text-direction override in
a one-line log reverses the rest of the line.

>>> bool(INVISIBLE_CHARS.search("\\u202enomis")), bool(INVISIBLE_CHARS.search("Müller"))
(True, False)

A list from outside (a recording's header names) in a one-line error is shown in part
(:func:`listing`): a hostile header of 100 000 columns is one short line, not a megabyte.
"""

from __future__ import annotations

import re
from collections.abc import Collection

__all__ = ["HIDDEN_CHARS", "INVISIBLE_CHARS", "listing"]

INVISIBLE_CHARS = re.compile("[\u061c\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]")

#: What a name or free text from outside may not hold at all: C0 and C1 controls (ESC starts
#: a terminal escape sequence; NUL, line breaks), the Unicode line and paragraph separators,
#: and :data:`INVISIBLE_CHARS`.
HIDDEN_CHARS = re.compile(f"[\x00-\x1f\x7f-\x9f\u2028\u2029]|{INVISIBLE_CHARS.pattern}")


def listing(names: Collection[str], limit: int = 12, *, quote: bool = True, width: int = 40) -> str:
    """The first ``limit`` of ``names`` joined by commas (``repr`` each when ``quote``), and how
    many there are in all when that is more; a name longer than ``width`` is cut with "…".

    >>> listing(["a", "b"]), listing([f"c{i}" for i in range(5000)], 3)
    ("'a', 'b'", "'c0', 'c1', 'c2', … (5000 in all)")
    >>> listing(["x" * 100_000], width=4)
    "'xxxx…'"
    """
    cut = [
        n if len(n) <= width else n[:width] + "…" for _, n in zip(range(limit), names, strict=False)
    ]
    shown = [repr(n) if quote else n for n in cut]
    more = f", … ({len(names)} in all)" if len(names) > limit else ""
    return ", ".join(shown) + more
