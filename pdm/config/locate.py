"""Where keys are written in TOML text, since ``tomllib`` keeps no positions: the line of
every key path (:func:`locate_keys`) and of nesting too deep to parse (:func:`too_deep_line`).
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Mapping

from pdm.config.fields import (
    Loc,
)

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
# Numbers, booleans and dates: everything up to the next separator.
_SCALAR = re.compile(r"[^,\]}\n#]*")


class _Scanner:
    """Finds the line of every key path in valid TOML text (best effort, no values)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.newlines = [i for i, c in enumerate(text) if c == "\n"]
        self.lines: dict[Loc, int] = {}

    def line(self, pos: int) -> int:
        return bisect.bisect_left(self.newlines, pos) + 1

    def peek(self, n: int = 1) -> str:
        return self.text[self.pos : self.pos + n]

    def skip_space(self, newlines: bool) -> None:
        text = self.text
        while self.pos < len(text):
            c = text[self.pos]
            if c in " \t\r" or (newlines and c == "\n"):
                self.pos += 1
            elif c == "#":
                end = text.find("\n", self.pos)
                self.pos = len(text) if end < 0 else end
            else:
                return

    def string(self) -> str:
        text, start = self.text, self.pos
        for quote in ('"""', "'''"):
            if text.startswith(quote, start):
                i = start + 3
                while True:
                    j = text.find(quote, i)
                    if j < 0:
                        raise ValueError("unterminated string")
                    if quote == '"""' and escaped(text, j):
                        i = j + 1
                        continue
                    # A multi-line string may end in up to two extra quotes.
                    while text.startswith(quote[0], j + 3):
                        j += 1
                    self.pos = j + 3
                    return text[start + 3 : j]
        quote = text[start]
        i = start + 1
        while True:
            j = text.find(quote, i)
            if j < 0:
                raise ValueError("unterminated string")
            if quote == '"' and escaped(text, j):
                i = j + 1
                continue
            self.pos = j + 1
            # Escapes stay undecoded: a quoted key with escapes is rare enough to miss.
            return text[start + 1 : j]

    def key(self) -> list[str]:
        parts: list[str] = []
        while True:
            self.skip_space(newlines=False)
            c = self.peek()
            if c in ('"', "'"):
                parts.append(self.string())
            else:
                m = _BARE_KEY.match(self.text, self.pos)
                if m is None:
                    raise ValueError("bad key")
                parts.append(m.group())
                self.pos = m.end()
            self.skip_space(newlines=False)
            if self.peek() != ".":
                return parts
            self.pos += 1

    def record(self, loc: Loc, pos: int) -> None:
        self.lines.setdefault(loc, self.line(pos))

    def value(self, loc: Loc) -> None:
        self.skip_space(newlines=False)
        c = self.peek()
        if c in ('"', "'"):
            self.string()
        elif c == "[":
            self.pos += 1
            index = 0
            while True:
                self.skip_space(newlines=True)
                if self.peek() == "]":
                    self.pos += 1
                    return
                self.record((*loc, index), self.pos)
                self.value((*loc, index))
                self.skip_space(newlines=True)
                if self.peek() == ",":
                    self.pos += 1
                    index += 1
        elif c == "{":
            self.pos += 1
            while True:
                self.skip_space(newlines=True)
                if self.peek() == "}":
                    self.pos += 1
                    return
                self.key_value(loc)
                self.skip_space(newlines=True)
                if self.peek() == ",":
                    self.pos += 1
        else:
            m = _SCALAR.match(self.text, self.pos)
            assert m is not None  # the pattern matches the empty string
            if m.end() == self.pos:
                raise ValueError("empty value")
            self.pos = m.end()

    def key_value(self, table: Loc) -> None:
        start = self.pos
        keys = self.key()
        for n in range(1, len(keys) + 1):
            self.record((*table, *keys[:n]), start)
        self.skip_space(newlines=False)
        if self.peek() != "=":
            raise ValueError("expected '='")
        self.pos += 1
        self.value((*table, *keys))

    def scan(self) -> dict[Loc, int]:
        arrays: dict[Loc, int] = {}  # array-of-tables path -> index of its current element
        table: Loc = ()
        while True:
            self.skip_space(newlines=True)
            if self.pos >= len(self.text):
                return self.lines
            start = self.pos
            if self.peek() == "[":
                is_array = self.peek(2) == "[["
                self.pos += 2 if is_array else 1
                keys = self.key()
                self.pos += 2 if is_array else 1
                path: Loc = ()
                for n, k in enumerate(keys):
                    path = (*path, k)
                    if is_array and n == len(keys) - 1:
                        self.record(path, start)
                        arrays[path] = arrays.get(path, -1) + 1
                        path = (*path, arrays[path])
                    elif path in arrays:
                        path = (*path, arrays[path])
                    self.record(path, start)
                table = path
            else:
                self.key_value(table)


def escaped(text: str, quote_pos: int) -> bool:
    n = 0
    while quote_pos - 1 - n >= 0 and text[quote_pos - 1 - n] == "\\":
        n += 1
    return n % 2 == 1


def locate_keys(text: str) -> dict[Loc, int]:
    """Map each key path of TOML ``text`` to the 1-based line where it is written.

    Tables map to their header line, keys to the line where the key starts, and
    elements of arrays (inline or ``[[array]]``) to the line where they start.
    Best effort: on anything unexpected it returns what it found so far.
    """
    scanner = _Scanner(text)
    try:
        return scanner.scan()
    except (ValueError, IndexError, RecursionError):
        return scanner.lines


def line_for(lines: Mapping[Loc, int], loc: Loc) -> int | None:
    """The line of ``loc``, or of its nearest written parent (a missing key's table)."""
    for n in range(len(loc), 0, -1):
        if loc[:n] in lines:
            return lines[loc[:n]]
    return None


#: Nesting reported as "too deep" when the TOML parser runs out of recursion (tomllib
#: recurses per level; Python's limit is ~1000 frames). Only used to find the line.
MAX_TOML_DEPTH = 100


def too_deep_line(text: str) -> int:
    """The line where ``[``/``{`` nesting inside values first exceeds :data:`MAX_TOML_DEPTH`
    (strings and comments skipped); the last line when it never does."""
    depth, line, i, n = 0, 1, 0, len(text)
    while i < n:
        c = text[i]
        if c == "\n":
            line += 1
        elif c == "#":
            j = text.find("\n", i)
            i = n if j < 0 else j
            continue
        elif c in "\"'":
            quote = c * 3 if text.startswith(c * 3, i) else c
            j = i + len(quote)
            while True:
                j = text.find(quote, j)
                if j < 0 or c == "'" or not escaped(text, j):
                    break
                j += 1
            end = n if j < 0 else j + len(quote)
            line += text.count("\n", i, end)
            i = end
            continue
        elif c in "[{":
            depth += 1
            if depth > MAX_TOML_DEPTH:
                return line
        elif c in "]}":
            depth = max(0, depth - 1)
        i += 1
    return line
