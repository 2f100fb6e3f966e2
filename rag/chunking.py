"""Token-aware chunking: sentence-packed chunks with overlap, each carrying its heading context.

Sizes are counted in cl100k tokens (the gateway's budget unit). Each chunk keeps its body
(shown to the model in the grounding message) apart from its context line
("Title > Heading > Subheading"), which is prepended for indexing so that a chunk deep in
a section still matches queries about the section's subject.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import tiktoken
from tiktoken.load import load_tiktoken_bpe

from rag.parsing import ParsedDocument, Section

# cl100k_base's pre-tokenizer pattern and special tokens (tiktoken_ext.openai_public); only the
# BPE ranks are a file, so an offline process can build the encoding from a local path.
_CL100K_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)
_CL100K_SPECIAL = {
    "<|endoftext|>": 100257, "<|fim_prefix|>": 100258, "<|fim_middle|>": 100259,
    "<|fim_suffix|>": 100260, "<|endofprompt|>": 100276,
}
_SENTENCE_END = re.compile(r"((?<=[.!?;:])\s+|\s*\n\s*)")
CONTEXT_SEPARATOR = " > "


def default_bpe_path() -> Path:
    """cl100k_base ranks: vendored in the gateway's assets, else the shared checkout copy."""
    root = Path(__file__).resolve().parent.parent
    candidates = [
        root / "gateway" / "assets" / "tiktoken" / "cl100k_base.tiktoken",
        root.parent / "shared" / "tiktoken" / "cl100k_base.tiktoken",
    ]
    for path in candidates:
        if path.exists():
            return path
    raise FileNotFoundError(
        "cl100k_base.tiktoken not found; pass its path: " + ", ".join(map(str, candidates))
    )


def load_encoding(path: Path | str | None = None) -> tiktoken.Encoding:
    """The cl100k_base encoding from a local BPE file (never fetched)."""
    ranks = load_tiktoken_bpe(str(path or default_bpe_path()))
    return tiktoken.Encoding(
        name="cl100k_base", pat_str=_CL100K_PATTERN, mergeable_ranks=ranks,
        special_tokens=_CL100K_SPECIAL,
    )


@dataclass(frozen=True)
class Chunk:
    text: str  # the body, as shown to the model
    context: str  # "Title > Heading > ..." ("" when the document has neither)
    position: int  # 0-based order within the document
    n_tokens: int  # tokens of the body
    page: int | None = None

    @property
    def indexed_text(self) -> str:
        """What the embedder and BM25 see: the context line, then the body."""
        return f"{self.context}\n{self.text}" if self.context else self.text


class Chunker:
    """Packs whole sentences into chunks of at most `chunk_tokens` (context line included).

    Consecutive chunks of a section share about `overlap_tokens`: whole trailing sentences
    when they fit, else the tail of the last sentence. Sentences longer than a chunk are cut
    into token windows.
    """

    def __init__(
        self, encoding: tiktoken.Encoding, chunk_tokens: int = 256, overlap_tokens: int = 48,
    ) -> None:
        if not 0 <= overlap_tokens < chunk_tokens // 2:
            raise ValueError("overlap_tokens must be below half of chunk_tokens")
        self.encoding = encoding
        self.chunk_tokens = chunk_tokens
        self.overlap_tokens = overlap_tokens

    def count(self, text: str) -> int:
        return len(self.encoding.encode_ordinary(text))

    def chunk(self, doc: ParsedDocument) -> list[Chunk]:
        chunks: list[Chunk] = []
        for section in doc.sections:
            context = CONTEXT_SEPARATOR.join(
                h for h in (doc.title, *section.headings) if h and h.strip()
            )
            budget = max(self.chunk_tokens - self.count(context) - 1, self.chunk_tokens // 2)
            for body in self._pack(section, budget):
                chunks.append(
                    Chunk(body, context, len(chunks), self.count(body), section.page)
                )
        return chunks

    def _pack(self, section: Section, budget: int) -> list[str]:
        # (tokens, separator to the next sentence): line breaks survive into the chunk text
        sentences: list[tuple[list[int], str]] = []
        parts = _SENTENCE_END.split(section.text)
        for piece, sep in zip(parts[::2], [*parts[1::2], ""], strict=True):
            if not piece.strip():
                continue
            tokens = self.encoding.encode_ordinary(piece.strip())
            glue = "\n" if "\n" in sep else " "
            if len(tokens) <= budget:
                sentences.append((tokens, glue))
            else:  # a run-on "sentence" (tables, code): overlapping token windows
                sentences.extend((window, glue) for window in self._windows(tokens, budget))
        bodies: list[str] = []
        current: list[tuple[list[int], str]] = []
        size = 0
        fresh = 0  # sentences in `current` not yet emitted in an earlier chunk
        for sent in sentences:
            if current and size + len(sent[0]) + 1 > budget:
                bodies.append(self._join(current))
                current = self._overlap(current)
                size = sum(len(t) + 1 for t, _ in current)
                while current and size + len(sent[0]) + 1 > budget:  # overlap must not crowd
                    size -= len(current.pop(0)[0]) + 1  # out the sentence that follows it
                fresh = 0
            current.append(sent)
            size += len(sent[0]) + 1
            fresh += 1
        if current and fresh:
            bodies.append(self._join(current))
        return bodies

    def _windows(self, tokens: list[int], budget: int) -> list[list[int]]:
        """Windows of at most `budget` tokens overlapping by about `overlap_tokens`, with cuts
        moved (a little) to word starts so that no word is split between windows."""
        out = []
        start = 0
        while True:
            end = min(start + budget, len(tokens))
            if end < len(tokens):
                end = self._word_start(tokens, end, lowest=start + budget // 2, step=-1)
            out.append(tokens[start:end])
            if end >= len(tokens):
                return out
            nxt = max(end - self.overlap_tokens, start + 1)
            start = self._word_start(tokens, nxt, lowest=nxt, step=1, highest=end)

    def _word_start(
        self, tokens: list[int], i: int, lowest: int, step: int, highest: int | None = None
    ) -> int:
        """The nearest index from `i` (moving by `step`, at most 16 tokens) whose token begins
        a word; `i` itself when there is none in reach."""
        limit = highest if highest is not None else len(tokens)
        for j in range(i, i + 16 * step, step):
            if j < lowest or j >= limit:
                break
            if self.encoding.decode_single_token_bytes(tokens[j])[:1].isspace():
                return j
        return i

    def _overlap(self, emitted: list[tuple[list[int], str]]) -> list[tuple[list[int], str]]:
        if not self.overlap_tokens:
            return []
        tail: list[tuple[list[int], str]] = []
        size = 0
        for sent in reversed(emitted):
            size += len(sent[0])
            if size > self.overlap_tokens:
                break
            tail.insert(0, sent)
        if not tail:  # the last sentence alone is longer than the overlap: take its end
            tokens, glue = emitted[-1]
            tail = [(tokens[-self.overlap_tokens :], glue)]
        return tail

    def _join(self, sentences: list[tuple[list[int], str]]) -> str:
        out = []
        for i, (tokens, glue) in enumerate(sentences):
            out.append(self.encoding.decode(tokens).strip())
            if i + 1 < len(sentences):
                out.append(glue)
        return "".join(out)
