"""What a simulated sequence will generate: its tokens, text and finish reason.

A plan is decided when the request arrives; the engine only decides *when* tokens come out.
Lorem text is sliced from a pre-tokenised corpus so that the fast path does no per-token
Python work; echo, JSON and tool-call outputs are tokenised once per request.
"""

from __future__ import annotations

import bisect
import random
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

import orjson

from workers.sim.tokenizer import Tokenizer

LOREM_WORDS: Final = (
    "lorem",
    "ipsum",
    "dolor",
    "sit",
    "amet",
    "consectetur",
    "adipiscing",
    "elit",
    "sed",
    "do",
    "eiusmod",
    "tempor",
    "incididunt",
    "ut",
    "labore",
    "et",
    "dolore",
    "magna",
    "aliqua",
    "enim",
    "ad",
    "minim",
    "veniam",
    "quis",
    "nostrud",
    "exercitation",
    "ullamco",
    "laboris",
    "nisi",
    "aliquip",
    "ex",
    "ea",
    "commodo",
    "consequat",
    "duis",
    "aute",
    "irure",
    "in",
    "reprehenderit",
    "voluptate",
    "velit",
    "esse",
    "cillum",
    "fugiat",
    "nulla",
    "pariatur",
    "excepteur",
    "sint",
    "occaecat",
    "cupidatat",
    "non",
    "proident",
    "sunt",
    "culpa",
    "qui",
    "officia",
    "deserunt",
    "mollit",
    "anim",
    "id",
    "est",
    "laborum",
)
CORPUS_SENTENCES: Final = 1200
MAX_SCHEMA_DEPTH: Final = 6


class TokenText(Protocol):
    """Text with token boundaries: span(a, b) is the text of tokens a..b-1."""

    def span(self, start: int, end: int) -> str: ...


class LoremCorpus:
    """A long, cyclic, pre-tokenised lorem ipsum text shared by all requests."""

    def __init__(self, tokenizer: Tokenizer, seed: int = 0) -> None:
        rng = random.Random(seed)
        sentences = []
        for i in range(CORPUS_SENTENCES):
            words = [rng.choice(LOREM_WORDS) for _ in range(rng.randint(5, 16))]
            for j in range(2, len(words) - 2):
                if rng.random() < 0.08:
                    words[j] += ","
            sentence = " ".join(words).capitalize() + "."
            gap = "\n\n" if i % 6 == 5 else " "
            sentences.append(sentence + gap)
        text = "".join(sentences)
        pieces = tokenizer.pieces(text)
        offsets = [0]
        for piece in pieces:
            offsets.append(offsets[-1] + len(piece))
        self.text = text
        self.n_tokens = len(pieces)
        self.offsets = offsets
        periods = [i for i, piece in enumerate(pieces) if "." in piece]
        self.sentence_starts = [0] + [i + 1 for i in periods[:-1]]
        # A natural stop falls after a plain "." (not ".\n\n": answers do not end in blank lines).
        self.sentence_ends = [i for i in periods if pieces[i] == "."]
        self.words = sorted({p for p in pieces if p.strip().isalpha()})

    def char_at(self, token: int) -> int:
        """Character offset of unrolled token index `token` in the repeated text."""
        cycle, index = divmod(token, self.n_tokens)
        return cycle * len(self.text) + self.offsets[index]

    def span(self, start: int, end: int) -> str:
        a, b = self.char_at(start), self.char_at(end)
        size = len(self.text)
        ca, ra = divmod(a, size)
        cb, rb = divmod(b, size)
        if ca == cb:
            return self.text[ra:rb]
        return self.text[ra:] + self.text * (cb - ca - 1) + self.text[:rb]

    def natural_end(self, token: int) -> int:
        """The first sentence-ending token at or after unrolled index `token`."""
        cycle, index = divmod(token, self.n_tokens)
        j = bisect.bisect_left(self.sentence_ends, index)
        if j == len(self.sentence_ends):
            cycle, j = cycle + 1, 0
        return cycle * self.n_tokens + self.sentence_ends[j]


class LoremText:
    """A window of the corpus starting at a sentence; the first token loses its space."""

    __slots__ = ("_corpus", "_start")

    def __init__(self, corpus: LoremCorpus, start: int) -> None:
        self._corpus = corpus
        self._start = start

    def span(self, start: int, end: int) -> str:
        text = self._corpus.span(self._start + start, self._start + end)
        if start == 0 and text[:1] == " ":
            return text[1:]
        return text


class PieceText:
    """Text given as one string per token."""

    __slots__ = ("_offsets", "_text")

    def __init__(self, pieces: Sequence[str]) -> None:
        offsets = [0]
        for piece in pieces:
            offsets.append(offsets[-1] + len(piece))
        self._offsets = offsets
        self._text = "".join(pieces)

    def span(self, start: int, end: int) -> str:
        last = len(self._offsets) - 1
        return self._text[self._offsets[min(start, last)] : self._offsets[min(end, last)]]


@dataclass(slots=True)
class ToolCallPlan:
    id: str
    name: str
    arguments: str
    args_start: int  # first token of the arguments (after the header tokens)
    args_end: int  # token after the arguments


@dataclass(slots=True)
class Plan:
    """The tokens one sequence generates. Tokens at or past `visible` are an EOS with no text."""

    text: TokenText
    n_tokens: int
    visible: int
    finish_reason: str
    stop_reason: str | None = None
    tool: ToolCallPlan | None = None

    def span(self, start: int, end: int) -> str:
        end = min(end, self.visible)
        if start >= end:
            return ""
        return self.text.span(start, end)

    def content(self, emitted: int) -> str:
        return self.span(0, emitted)

    def args_span(self, start: int, end: int) -> str:
        """Argument text of a tool-call plan between tokens start and end."""
        tool = self.tool
        if tool is None:
            return ""
        start, end = max(start, tool.args_start), min(end, tool.args_end, self.visible)
        return self.text.span(start, end) if start < end else ""


@dataclass(slots=True)
class PlanSpec:
    """What the request asks for, as far as the output is concerned."""

    mode: str  # "lorem" | "echo"
    echo_text: str
    max_tokens: int
    min_tokens: int
    ignore_eos: bool
    stop: Sequence[str]
    json_schema: Mapping[str, Any] | None  # set for response_format json_object/json_schema
    json_mode: bool
    tool: Mapping[str, Any] | None  # the function definition to call


class Planner:
    """Builds plans; owns the lorem corpus and the tokenizer."""

    def __init__(self, tokenizer: Tokenizer, output_tokens: tuple[int, int]) -> None:
        self.tokenizer = tokenizer
        self.corpus = LoremCorpus(tokenizer)
        self.output_tokens = output_tokens

    def plan(self, spec: PlanSpec, rng: random.Random) -> Plan:
        if spec.tool is not None:
            plan = self._tool_plan(spec, rng)
        elif spec.json_mode:
            value = schema_value(spec.json_schema or {}, rng, self.corpus.words)
            if not isinstance(value, dict):
                value = {"answer": value}
            plan = self._text_plan(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode())
        elif spec.mode == "echo":
            plan = self._text_plan(spec.echo_text)
        else:
            plan = self._lorem_plan(spec, rng)
        if spec.stop:
            plan = _apply_stop(plan, spec.stop)
        return _apply_max_tokens(plan, spec.max_tokens)

    def _lorem_plan(self, spec: PlanSpec, rng: random.Random) -> Plan:
        corpus = self.corpus
        start = corpus.sentence_starts[rng.randrange(len(corpus.sentence_starts))]
        text = LoremText(corpus, start)
        if spec.ignore_eos:
            return Plan(text, spec.max_tokens, spec.max_tokens, "length")
        low, high = self.output_tokens
        target = max(rng.randint(low, high), spec.min_tokens)
        visible = corpus.natural_end(start + target - 1) - start + 1
        return Plan(text, visible + 1, visible, "stop")

    def _text_plan(self, text: str) -> Plan:
        pieces = self.tokenizer.pieces(text)
        return Plan(PieceText(pieces), len(pieces) + 1, len(pieces), "stop")

    def _tool_plan(self, spec: PlanSpec, rng: random.Random) -> Plan:
        function = spec.tool or {}
        name = str(function.get("name", ""))
        parameters = function.get("parameters") or {"type": "object", "properties": {}}
        args = schema_value(parameters, rng, self.corpus.words)
        arguments = orjson.dumps(args if isinstance(args, dict) else {}).decode()
        # Hermes-style text, as many vLLM tool parsers expect; only its length matters here.
        header = self.tokenizer.pieces(f'<tool_call>\n{{"name": "{name}", "arguments": ')
        body = self.tokenizer.pieces(arguments)
        trailer = self.tokenizer.pieces("}\n</tool_call>")
        pieces = [""] * len(header) + body + [""] * len(trailer)
        tool = ToolCallPlan(
            id=f"chatcmpl-tool-{uuid.uuid4().hex}",
            name=name,
            arguments=arguments,
            args_start=len(header),
            args_end=len(header) + len(body),
        )
        return Plan(PieceText(pieces), len(pieces) + 1, len(pieces), "tool_calls", tool=tool)


def _apply_stop(plan: Plan, stops: Sequence[str]) -> Plan:
    """Cut the plan at the first stop string; the stop string itself is not returned."""
    if plan.tool is not None:
        return plan
    pieces = [plan.text.span(i, i + 1) for i in range(plan.visible)]
    text = "".join(pieces)
    found = [(text.find(s), s) for s in stops if s and s in text]
    if not found:
        return plan
    cut, stop = min(found)
    last_char = cut + len(stop) - 1
    clipped: list[str] = []
    position = 0
    for piece in pieces:
        clipped.append(piece[: max(0, cut - position)])
        position += len(piece)
        if position > last_char:
            break
    # The token completing the stop string was generated (and is counted), but not shown.
    return Plan(PieceText(clipped), len(clipped), len(clipped), "stop", stop_reason=stop)


def _apply_max_tokens(plan: Plan, max_tokens: int) -> Plan:
    if plan.n_tokens <= max_tokens:
        return plan
    # Cut short: the sequence ends by length, without an EOS.
    return Plan(
        plan.text,
        max_tokens,
        min(plan.visible, max_tokens),
        "length",
        tool=plan.tool,
    )


def schema_value(
    schema: Mapping[str, Any], rng: random.Random, words: Sequence[str], depth: int = 0
) -> Any:
    """A value that satisfies the common subset of JSON Schema (types, enum, const, items)."""
    if not isinstance(schema, dict):
        return None
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    if "default" in schema:
        return schema["default"]
    for key in ("anyOf", "oneOf", "allOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            return schema_value(options[0], rng, words, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else "string"
    if depth > MAX_SCHEMA_DEPTH:
        return None
    if kind == "object":
        properties = schema.get("properties") or {}
        if not properties and depth == 0:
            return {"answer": " ".join(rng.choice(words) for _ in range(6)).strip()}
        return {
            str(key): schema_value(sub, rng, words, depth + 1)
            for key, sub in properties.items()
            if isinstance(sub, dict)
        }
    if kind == "array":
        items = schema.get("items") or {"type": "string"}
        count = max(1, int(schema.get("minItems", 1)))
        return [schema_value(items, rng, words, depth + 1) for _ in range(count)]
    if kind == "integer":
        first = int(schema.get("minimum", 0))
        return rng.randint(first, max(first, int(schema.get("maximum", first + 100))))
    if kind == "number":
        bottom = float(schema.get("minimum", 0.0))
        return round(rng.uniform(bottom, float(schema.get("maximum", bottom + 100.0))), 2)
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "null":
        return None
    return " ".join(rng.choice(words).strip() for _ in range(rng.randint(1, 4)))
