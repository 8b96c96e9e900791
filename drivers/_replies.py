"""Strict parsers for instrument replies: a reply is read exactly, or refused with a clear error.

A garbled or cut reply must never turn into a plausible number. pyvisa's own
block reader searches the whole message for a ``#`` when the header is damaged
(and may find one inside the payload); these parsers accept a block only if it
starts at the first byte and its length matches to the byte. Every failure is a
:class:`ReplyError` (a ``ValueError``) naming the instrument and the command, which
labstack's retry layer treats as a reply worth asking for again.
"""

from __future__ import annotations

import math

import numpy as np


class ReplyError(ValueError):
    """A reply that cannot be read; says which instrument, which command and why."""


def float_reply(text: str, instrument: str, command: str) -> float:
    """A finite float from an ASCII reply such as ``"+1.234E-02"``."""
    stripped = text.strip()
    try:
        value = float(stripped)
    except (TypeError, ValueError):
        raise ReplyError(f"{instrument}: {command!r} replied {text[:40]!r}, not a number") from None
    if not math.isfinite(value):
        raise ReplyError(f"{instrument}: {command!r} replied {text[:40]!r}, not a finite number")
    return value


def block_length(header: bytes, instrument: str, command: str) -> tuple[int, int]:
    """From the start of an IEEE 488.2 definite block, (header length, payload length).

    ``header`` must hold at least the ``#`` and the digit count, plus that many digits
    when available; returns the total header size and the payload size.
    """
    if len(header) < 2 or header[:1] != b"#" or not header[1:2].isdigit() or header[1:2] == b"0":
        raise ReplyError(f"{instrument}: {command!r} reply does not start with a definite block header: {header[:12]!r}")
    digits = int(header[1:2])
    field = header[2 : 2 + digits]
    if len(field) < digits or not field.isdigit():
        raise ReplyError(f"{instrument}: {command!r} block header {header[: 2 + digits]!r} has no valid length")
    return 2 + digits, int(field)


def parse_block(raw: bytes, termination: bytes, instrument: str, command: str) -> bytes:
    """The payload of a complete ``#<n><len><payload><termination>`` message."""
    head, length = block_length(raw[:11], instrument, command)
    end = head + length
    if len(raw) != end + len(termination) or raw[end:] != termination:
        raise ReplyError(
            f"{instrument}: {command!r} block announced {length} bytes, message has {len(raw) - head} after the header"
        )
    return raw[head:end]


def block_body(body: bytes, length: int, termination: bytes, instrument: str, command: str) -> memoryview:
    """The payload of a block whose header announced ``length`` bytes, from what was read
    after the header (``body``: the payload then the termination), without a copy."""
    if len(body) != length + len(termination) or body[length:] != termination:
        raise ReplyError(
            f"{instrument}: {command!r} block announced {length} bytes, message has {len(body)} after the header"
        )
    return memoryview(body)[:length]


def float32_cells(payload: bytes | memoryview, n_cells: int, instrument: str, command: str) -> np.ndarray:
    """(n_cells, n_samples) float32 from a sample-major little-endian payload."""
    if n_cells <= 0 or len(payload) % (4 * n_cells):
        raise ReplyError(
            f"{instrument}: {command!r} returned {len(payload)} bytes, not whole float32 samples of {n_cells} cells"
        )
    data = np.frombuffer(payload, dtype="<f4")
    return np.ascontiguousarray(data.reshape(-1, n_cells).T)
