"""Automatic prefix caching over full KV blocks, as vLLM's hash chain does it."""

from __future__ import annotations

from collections import OrderedDict


class PrefixCache:
    """Automatic prefix caching over full blocks, with LRU eviction (hash chain like vLLM)."""

    def __init__(self, capacity_blocks: int, block_size: int) -> None:
        self._blocks: OrderedDict[int, None] = OrderedDict()
        self._capacity = capacity_blocks
        self._size = block_size

    def lookup_and_insert(self, ids: list[int]) -> int:
        """Tokens of `ids` already cached; the prompt's full blocks are cached afterwards."""
        size, blocks = self._size, self._blocks
        parent = 0
        hits = 0
        missed = False
        for start in range(0, len(ids) - size + 1, size):
            parent = hash((parent, *ids[start : start + size]))
            if not missed and parent in blocks:
                blocks.move_to_end(parent)
                hits += size
                continue
            missed = True
            blocks[parent] = None
            if len(blocks) > self._capacity:
                blocks.popitem(last=False)
        # At least one prompt token is always computed, so the first token can be sampled.
        return min(hits, max(0, len(ids) - 1))
