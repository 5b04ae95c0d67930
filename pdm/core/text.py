"""Characters that text from outside must not carry into names, logs and audit records.

Bidirectional and zero-width formatting (Unicode's "Trojan Source" characters) make a string
read as another: ``"\\u202enomis"`` is shown as ``simon``, and a text-direction override in
a one-line log reverses the rest of the line.

>>> bool(INVISIBLE_CHARS.search("\\u202enomis")), bool(INVISIBLE_CHARS.search("Müller"))
(True, False)
"""

from __future__ import annotations

import re

__all__ = ["INVISIBLE_CHARS"]

INVISIBLE_CHARS = re.compile("[\u061c\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]")
