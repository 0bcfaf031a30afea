"""Splitting a program's raw output into bounded lines (a leaf module: imports nothing of ours).

Both the process runtime and the Docker log pump hand output to the orchestrator line by line.
A program that prints without newlines must not make the app host hold its whole output: as
Docker does for container logs, a line longer than ``MAX_LINE_BYTES`` is cut into pieces of at
most that many bytes (at a UTF-8 character boundary), each delivered as a line of its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

#: The longest line handed on, in bytes (Docker's limit for one log message: 16 KiB).
MAX_LINE_BYTES = 16 * 1024


def _utf8_cut(data: bytearray, start: int, limit: int) -> int:
    """Where to cut ``data[start:]`` at most ``limit`` bytes on without splitting a UTF-8
    character (at ``limit`` itself when the bytes there are not well-formed UTF-8)."""
    cut = start + limit
    # Step back over at most 3 continuation bytes (0b10xxxxxx) to the character's first byte.
    while cut > start + limit - 3 and (data[cut] & 0xC0) == 0x80:
        cut -= 1
    return cut if (data[cut] & 0xC0) != 0x80 else start + limit


class LineSplitter:
    """Turns raw byte chunks into decoded lines of at most ``limit`` bytes each.

    ``feed(chunk)`` returns the lines completed by ``chunk`` (a newline ends a line; ``\\r\\n``
    counts as one); ``finish()`` returns what is left once the stream ended. The splitter never
    holds more than ``limit + 1`` bytes between calls.
    """

    def __init__(self, limit: int = MAX_LINE_BYTES) -> None:
        if limit < 4:
            raise ValueError("a line limit must hold one UTF-8 character (4 bytes)")
        self.limit = limit
        self._buffer = bytearray()

    def feed(self, chunk: bytes | bytearray) -> list[str]:
        out: list[str] = []
        buffer = self._buffer
        buffer += chunk
        start, end, limit = 0, len(buffer), self.limit
        while start < end:
            newline = buffer.find(b"\n", start, min(end, start + limit + 2))
            if newline >= 0:
                stop = newline - 1 if newline > start and buffer[newline - 1] == 0x0D else newline
                if stop - start <= limit:
                    out.append(buffer[start:stop].decode("utf-8", "replace"))
                    start = newline + 1
                    continue
            elif end - start <= limit or (
                end - start == limit + 1 and buffer[end - 1] == 0x0D  # may be a \r\n
            ):
                break  # an unfinished line: wait for more
            cut = _utf8_cut(buffer, start, limit)
            out.append(buffer[start:cut].decode("utf-8", "replace"))
            start = cut
        del buffer[:start]
        return out

    def finish(self) -> list[str]:
        """The last, unterminated line (if any); the splitter is empty afterwards."""
        if not self._buffer:
            return []
        data = bytes(self._buffer).removesuffix(b"\r")
        self._buffer.clear()
        return [data.decode("utf-8", "replace")] if data else []


def split_lines(chunks: Iterable[bytes], limit: int = MAX_LINE_BYTES) -> Iterator[str]:
    """The lines of a stream of byte chunks, each at most ``limit`` bytes (the last one even
    without a newline)."""
    splitter = LineSplitter(limit)
    for chunk in chunks:
        yield from splitter.feed(chunk)
    yield from splitter.finish()
