"""State records as they travel on a state topic: compressed, and cut into chunks that fit a message.

Kafka caps a message's size; a partition's state can be larger. Each chunk says which of how many it
is and carries the whole blob's CRC-32, so a restore takes only a set that belongs together.
"""

from __future__ import annotations

import struct
import zlib

import zstandard


class StateError(ValueError):
    """A state that cannot be restored (corrupt, truncated, or of an unknown version)."""


CHUNK_MAGIC = b"DLC\x01"
CHUNK_BYTES = 16 * 1024 * 1024  # well under the state topic's message limit
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_zstd = zstandard.ZstdCompressor(level=1)


def compress(record: bytes) -> bytes:
    """A state record as written to the state topic: zstd level 1.

    Six times faster than zlib level 1 on these records and a third of the size (mostly zeros:
    slots a series has not reached yet); state written every transaction made zlib a fifth of the
    service's time in the performance benchmark.
    """
    return _zstd.compress(record)


def decompress(blob: bytes) -> bytes:
    """A state-topic record back (zstd, or zlib as written before zstd): ``StateError`` if neither."""
    try:
        if blob[:4] == _ZSTD_MAGIC:
            return zstandard.ZstdDecompressor().decompress(blob)
        return zlib.decompress(blob)
    except (zstandard.ZstdError, zlib.error) as exc:
        raise StateError(f"a state record does not decompress: {exc}") from exc


def to_chunks(blob: bytes, size: int = CHUNK_BYTES) -> list[bytes]:
    """A (compressed) snapshot as state-topic records of at most ``size`` bytes of payload each.

    Each record says which of how many it is and carries the whole blob's CRC-32, so a restore
    only accepts a set that belongs together (a compacted topic keeps the latest record per key;
    an older, longer snapshot's extra chunks may linger under their keys).

    >>> parts = to_chunks(b"abcdefghij", size=4)
    >>> len(parts), from_chunks({i: p for i, p in enumerate(reversed(parts))}) is None
    (3, True)
    >>> from_chunks(dict(enumerate(parts)))
    b'abcdefghij'
    """
    crc = zlib.crc32(blob)
    n = max(1, -(-len(blob) // size))
    return [CHUNK_MAGIC + struct.pack("<III", i, n, crc) + blob[i * size:(i + 1) * size] for i in range(n)]


def from_chunks(records: dict[int, bytes]) -> bytes | None:
    """The blob, from records by chunk index; None when the set is incomplete or does not match."""
    first = records.get(0)
    head = len(CHUNK_MAGIC) + 12
    if first is None or not first.startswith(CHUNK_MAGIC) or len(first) < head:
        return None
    _, n, crc = struct.unpack_from("<III", first, len(CHUNK_MAGIC))
    pieces = []
    for i in range(n):
        r = records.get(i)
        if r is None or not r.startswith(CHUNK_MAGIC) or len(r) < head:
            return None
        if struct.unpack_from("<III", r, len(CHUNK_MAGIC)) != (i, n, crc):
            return None
        pieces.append(r[head:])
    blob = b"".join(pieces)
    return blob if zlib.crc32(blob) == crc else None
