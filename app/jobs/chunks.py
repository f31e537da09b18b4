"""A job's stored audio as a seekable, read-only file: the decoder reads it window by window, one stored chunk
at a time, from whichever replica runs the job (no shared filesystem). Blocking: it runs on a decode thread
and asks the event loop for each chunk it needs."""

from __future__ import annotations

import io
from collections import OrderedDict
from collections.abc import Callable

ChunkFetcher = Callable[[int], bytes]  # seq -> the chunk's bytes (blocking)


class ChunkFile(io.RawIOBase):
    def __init__(self, size: int, chunk_bytes: int, fetch: ChunkFetcher, cached: int = 4) -> None:
        super().__init__()
        self._size = size
        self._chunk_bytes = chunk_bytes
        self._fetch = fetch
        self._cache: OrderedDict[int, bytes] = OrderedDict()
        self._cached = cached  # chunks kept (decoders seek back a little, e.g. to re-read a header)
        self._position = 0
        # Why a read came back short (the store failed, the job was deleted): raised by the reader's owner
        # after the decoder stops, since decoders call read() from C and swallow exceptions there.
        self.failure: BaseException | None = None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        written = 0
        while written < len(view) and self._position < self._size:
            seq, offset = divmod(self._position, self._chunk_bytes)
            try:
                chunk = self._chunk(seq)
            except Exception as exc:  # noqa: BLE001 - kept for the owner; the decoder sees the end
                self.failure = exc
                break
            take = min(len(view) - written, len(chunk) - offset, self._size - self._position)
            if take <= 0:
                break
            view[written:written + take] = chunk[offset:offset + take]
            written += take
            self._position += take
        return written

    def _chunk(self, seq: int) -> bytes:
        if seq in self._cache:
            self._cache.move_to_end(seq)
            return self._cache[seq]
        data = self._fetch(seq)
        self._cache[seq] = data
        while len(self._cache) > self._cached:
            self._cache.popitem(last=False)
        return data
