"""The ground floor: small pieces every room may use.

Nothing here imports another ``pdm`` package except :mod:`pdm.errors`; every other room
may import from here. What lives here: :class:`~pdm.core.chunk.Chunk` (what a source
yields), :mod:`~pdm.core.time` (ISO 8601 at the edges), :mod:`~pdm.core.net` (loopback
checks), :mod:`~pdm.core.files` (directory fsync), :mod:`~pdm.core.durable` (SQLite files
that survive a power cut), :mod:`~pdm.core.jsonkeys` (JSON objects without repeated
keys), :mod:`~pdm.core.text` (characters outside text must not carry).
"""
