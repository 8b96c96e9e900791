"""Index arithmetic for streaming points into N-D arrays in C order.

A sequence produces each variable's points in C (row-major) order of its sweep dims.
Buffering them flat and writing flat ranges keeps the hot loop free of index maths;
these helpers turn a flat range into the few hyper-rectangles zarr can write, and
pick chunk shapes whose chunks are contiguous flat ranges, so a buffer that fills
exactly one chunk is written without reading anything back.
"""

from __future__ import annotations

import math


def flat_boxes(start: int, stop: int, shape: tuple[int, ...]) -> list[tuple[slice, ...]]:
    """Hyper-rectangles (as slices) covering flat indices ``[start, stop)`` of ``shape``.

    Returned in flat order; each box is a contiguous flat range, so consecutive
    pieces of a flat buffer reshape straight into them. At most ``2 * len(shape) - 1``.
    """
    if start >= stop:
        return []
    if not shape:
        return [()]
    inner = math.prod(shape[1:])
    full_inner = tuple(slice(0, n) for n in shape[1:])
    i0, r0 = divmod(start, inner)
    i1, r1 = divmod(stop, inner)
    out: list[tuple[slice, ...]] = []
    if r0:
        if i0 == i1:
            return [(slice(i0, i0 + 1), *b) for b in flat_boxes(r0, r1, shape[1:])]
        out += [(slice(i0, i0 + 1), *b) for b in flat_boxes(r0, inner, shape[1:])]
        i0 += 1
    if i1 > i0:
        out.append((slice(i0, i1), *full_inner))
    if r1:
        out += [(slice(i1, i1 + 1), *b) for b in flat_boxes(0, r1, shape[1:])]
    return out


def box_shape(box: tuple[slice, ...]) -> tuple[int, ...]:
    return tuple(s.stop - s.start for s in box)


def sweep_chunks(shape: tuple[int, ...], points: int) -> tuple[int, ...]:
    """Chunk shape over sweep dims holding about ``points`` points as one flat range.

    Inner dims are taken whole while they fit; the first dim that does not fit is
    split; dims outside it get chunk length 1. So every chunk is a contiguous range
    of flat indices (the last one along a split dim may be shorter).
    """
    points = max(1, int(points))
    chunks = list(shape)
    inner = 1
    for j in range(len(shape) - 1, -1, -1):
        if inner * shape[j] <= points:
            inner *= shape[j]
            continue
        chunks[j] = max(1, points // inner)
        for k in range(j):
            chunks[k] = 1
        break
    return tuple(max(1, c) for c in chunks)
