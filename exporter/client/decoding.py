"""A response body's gzip or deflate content-encoding undone for the recorder, a bounded step at a time."""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import Any

# Compressed bodies are inflated at most this much per step, so one small chunk that inflates
# hugely never becomes one huge allocation.
DECODE_STEP = 64 * 1024
# Content-encodings the recorder inflates itself (zlib: wbits=47 takes a gzip or zlib header).
ZLIB_ENCODINGS = frozenset(("gzip", "x-gzip", "deflate"))
# What Decoder.pieces raises: an encoding it cannot undo (ValueError), a corrupt body.
DECODE_ERRORS: tuple[type[Exception], ...] = (ValueError, zlib.error)


class Decoder:
    """Undoes one body's content-encoding, or says (on its first piece) that it cannot."""

    def __init__(self, content_encoding: str, inflater: Any) -> None:
        self.content_encoding = content_encoding
        self._inflater = inflater  # None: an encoding we cannot undo (br, zstd, several)

    def pieces(self, chunk: bytes) -> Iterator[bytes]:
        """``chunk`` decoded, at most ``DECODE_STEP`` bytes a piece: stop asking when no more is
        wanted. Raises one of ``DECODE_ERRORS``."""
        inflater = self._inflater
        if inflater is None:
            raise ValueError(f"cannot decode content-encoding {self.content_encoding!r}")
        data = chunk
        while data:
            yield inflater.decompress(data, DECODE_STEP)
            data = inflater.unconsumed_tail


def decoder_for(content_encoding: str) -> Decoder | None:
    """What undoes a body sent with ``content_encoding``; ``None`` if it is not encoded.

    The transport sees the bytes as sent (httpx and httpx2 ask for gzip and deflate); the
    caller's library decodes them later, for the caller.
    """
    codings = [c.strip().lower() for c in content_encoding.split(",")]
    codings = [c for c in codings if c and c != "identity"]
    if not codings:
        return None
    if len(codings) == 1 and codings[0] in ZLIB_ENCODINGS:
        return Decoder(content_encoding, zlib.decompressobj(wbits=47))
    return Decoder(content_encoding, None)
