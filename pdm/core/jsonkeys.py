"""JSON objects whose keys are distinct, for every room that reads JSON from outside.

``json.loads`` keeps the last of a repeated key: ``{"by": "ana", "by": "bob"}`` is bob, where
a log, a proxy or another parser in front may have read ana. Input from the network refuses
such an object instead.

>>> import json
>>> json.loads('{"by": "ana", "by": "bob"}', object_pairs_hook=unique_keys)
Traceback (most recent call last):
ValueError: key 'by' appears twice
"""

from __future__ import annotations

from typing import Any

__all__ = ["unique_keys"]


def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook`` for :func:`json.loads`: the object, or ``ValueError`` naming the
    first key that appears twice (a ``json.JSONDecodeError`` is a ``ValueError`` too, so one
    ``except ValueError`` takes both)."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"key {key!r} appears twice")
        out[key] = value
    return out
