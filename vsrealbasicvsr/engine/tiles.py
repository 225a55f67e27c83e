"""How a frame is cut into tiles for the engine (`Engine(tile=...)`)."""

from __future__ import annotations


def spans(size: int, tile: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """Cut one dimension of `size` pixels into tiles of `tile` pixels (the last may be shorter).

    Returns `(start, end, computed_start, computed_end)` for each tile: the tile owns pixels
    [start, end) of the output and is computed over [computed_start, computed_end), which adds
    `overlap` pixels on each side, shifted inwards at the borders so that every tile is computed
    over the same min(size, tile + 2 * overlap) pixels (same shape: same memory, no recompiles,
    and no thin slivers that the network would see with too little context).
    """
    computed = min(size, tile + 2 * overlap)
    result = []
    for start in range(0, size, tile):
        end = min(size, start + tile)
        computed_start = min(max(0, start - overlap), size - computed)
        result.append((start, end, computed_start, computed_start + computed))
    return result
