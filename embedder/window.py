"""The text the gateway embeds for a request: a window that keeps the END of long prompts.

all-MiniLM-L6-v2 reads at most 256 word pieces (254 plus [CLS] and [SEP]) and silently drops
the rest. Long prompts usually put what is being asked last: few-shot examples then the real
question, a pasted document then the instruction. Embedding the first 256 pieces gives every
prompt with the same preamble the same vector. `query_window` keeps the first `head` pieces
(what kind of prompt this is) and as many of the last pieces as still fit (what is asked), so
the embedding sees both. A text that fits is returned unchanged, so short queries embed
exactly as before and the cache and RAG see the usual vectors.

Counting uses the model's own tokenizer (`tokenizer.json` bundled with the model), so the
window fits exactly. Cuts fall on word boundaries (never inside a "##" piece), so the window
tokenizes to the same pieces as the text it was cut from. Only the two ends of a long text
are tokenized, so the cost stays ~0.1-0.5 ms however long the prompt is.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

__all__ = ["SEPARATOR", "QueryWindow", "default_window", "query_window"]

SEPARATOR = "\n…\n"  # one word piece ("…"); marks where the middle was dropped
_CHARS_PER_PIECE = 6  # slice size per wanted piece (English averages ~4.5 characters)


class QueryWindow:
    """`window(text)`: the first `head` and the last word pieces of `text`, `max_pieces` in all.

    `max_pieces` counts the pieces of the window itself (the separator included), without
    [CLS]/[SEP]: 254 for all-MiniLM-L6-v2's max_seq_length of 256.
    """

    def __init__(
        self, tokenizer: Any | None = None, *, head: int = 32, max_pieces: int = 254
    ) -> None:
        if tokenizer is None:
            tokenizer = _load_tokenizer()
        if not 0 <= head < max_pieces - 1:
            raise ValueError("need 0 <= head < max_pieces - 1")
        self.tokenizer = tokenizer
        self.head = head
        self.max_pieces = max_pieces
        self.tail = max_pieces - head - (1 if head else 0)  # the separator is one piece

    def _pieces(self, text: str) -> tuple[list[str], list[tuple[int, int]]]:
        enc = self.tokenizer.encode(text, add_special_tokens=False)
        return enc.tokens, enc.offsets

    def _head_end(self, text: str) -> int:
        """Character offset just after the first `head` pieces, at a word boundary."""
        size = self.head * _CHARS_PER_PIECE
        while True:
            part = text[:size]
            toks, offs = self._pieces(part)
            if len(toks) > self.head or size >= len(text):
                break
            size *= 2
        if len(toks) <= self.head:
            return len(text)
        # Piece `head` starts the dropped part; if it continues a word, drop the whole word.
        i = self.head
        while i > 0 and toks[i].startswith("##"):
            i -= 1
        return offs[i][0]

    def _tail(self, text: str) -> tuple[list[str], list[tuple[int, int]], int]:
        """Pieces of a suffix of `text` holding more than `max_pieces` pieces (or all of it).

        Returns the pieces, their offsets and where the suffix starts in `text`.
        """
        size = (self.max_pieces + 1) * _CHARS_PER_PIECE
        while True:
            start = max(len(text) - size, 0)
            toks, offs = self._pieces(text[start:])
            # One piece more than needed: the suffix may begin inside a word.
            if len(toks) > self.max_pieces + 1 or start == 0:
                return toks, offs, start
            size *= 2

    def __call__(self, text: str) -> str:
        # A word piece never spans less than one character, so a short text always fits.
        if len(text) <= self.max_pieces:
            return text
        toks, offs, start = self._tail(text)
        if start == 0 and len(toks) <= self.max_pieces:  # the whole text fits
            return text
        i = len(toks) - self.tail
        while i < len(toks) and toks[i].startswith("##"):  # never start inside a word
            i += 1
        tail_start = start + offs[i][0] if i < len(toks) else len(text)
        if not self.head:
            return text[tail_start:]
        head_end = self._head_end(text)
        if tail_start <= head_end:  # word boundaries overlap: too little to drop, keep it all
            return text
        return text[:head_end].rstrip() + SEPARATOR + text[tail_start:].lstrip()


def _load_tokenizer() -> Any:
    from tokenizers import Tokenizer

    from embedder.minilm import model_dir

    tok = Tokenizer.from_file(str(Path(model_dir()) / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    return tok


@functools.cache
def default_window() -> QueryWindow:
    """The process-wide window for the bundled all-MiniLM-L6-v2 (loaded once, ~50 ms)."""
    return QueryWindow()


def query_window(text: str) -> str:
    """The text to embed for a request whose last user message is `text` (see module doc)."""
    return default_window()(text)
