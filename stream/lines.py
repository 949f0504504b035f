"""Records of an events file, for replay: lines made into records only when one is asked for."""

from __future__ import annotations

from collections.abc import Sequence

from .compiled import _native
from .decode import Record


class LineBatch(Sequence[Record]):
    """Records of lines of one file, made only when one is asked for (a dead letter needs its
    record; a good event needs only its bytes): replay reads hundreds of thousands of lines a second.

    >>> b = LineBatch([b'{"a": 1}', b'oops'], "events.jsonl", [7, 9])
    >>> len(b), b[1]
    (2, Record(value=b'oops', key=None, topic='events.jsonl', partition=0, offset=9))
    """

    __slots__ = ("values", "source", "numbers")
    partition = 0  # one file is one input partition

    def __init__(self, values: list[bytes], source: str, numbers: Sequence[int]):
        self.values = values
        self.source = source
        self.numbers = numbers

    def __len__(self) -> int:
        return len(self.values)

    def __getitem__(self, i: int) -> Record:  # type: ignore[override]
        return Record(self.values[i], None, self.source, 0, self.numbers[i])


def plain_line_count(block: bytes) -> int | None:
    """The number of lines of a block of whole lines when every one is plain (not blank, not starting
    with whitespace, no CR anywhere), else None.

    >>> plain_line_count(b'{"a":1}\\n{"a":2}\\n'), plain_line_count(b'{"a":1}\\n\\n{"a":2}'), plain_line_count(b'{}\\r\\n')
    (2, None, None)
    """
    if _native is not None:
        n = _native.plain_lines(block)
        return None if n < 0 else n
    if not block:
        return 0
    if b"\r" in block or block[:1] in b" \t\n\x0b\x0c" or any(b"\n" + c in block for c in (b"\n", b" ", b"\t", b"\x0b", b"\x0c")):
        return None
    return block.count(b"\n") + (not block.endswith(b"\n"))


def line_end(block: bytes, k: int, start: int = 0) -> int:
    """The offset just past the ``k``-th newline of ``block`` at or after ``start`` (k >= 1), or -1
    when it has fewer.

    >>> line_end(b"a\\nb\\nc\\n", 2), line_end(b"a\\nb\\nc\\n", 2, start=2), line_end(b"a\\n", 2)
    (4, 6, -1)
    """
    if _native is not None:
        return _native.line_end(block, k, start)
    at = start - 1
    for _ in range(k):
        at = block.find(b"\n", at + 1)
        if at < 0:
            return -1
    return at + 1


class LineBlock(Sequence[Record]):
    """Whole lines of a file as one block of bytes, none of them blank or ending in a CR: the native
    decoder reads the block as it is, and a bytes object per line is made only if a line is asked
    for (the Python path, or a dead letter). Splitting into lines took a tenth of a replay.

    >>> b = LineBlock(b'{"a": 1}\\noops\\n', "events.jsonl", first=7)
    >>> len(b), b[1]
    (2, Record(value=b'oops', key=None, topic='events.jsonl', partition=0, offset=8))
    """

    __slots__ = ("block", "source", "first", "_len", "_values")
    partition = 0  # one file is one input partition

    def __init__(self, block: bytes, source: str, first: int, lines: int | None = None):
        self.block = block
        self.source = source
        self.first = first  # the line number of the block's first line
        self._len = lines if lines is not None else block.count(b"\n") + (not block.endswith(b"\n"))
        self._values: list[bytes] | None = None

    @property
    def values(self) -> list[bytes]:
        if self._values is None:
            lines = self.block.split(b"\n")
            if self.block.endswith(b"\n"):
                lines.pop()
            self._values = lines
        return self._values

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, i: int) -> Record:  # type: ignore[override]
        if not 0 <= i < self._len:
            raise IndexError(i)
        return Record(self.values[i], None, self.source, 0, self.first + i)
