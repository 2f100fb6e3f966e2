"""Response bodies and SSE frames shaped like vLLM's OpenAI server.

Streaming chunks are assembled from a per-request byte prefix plus the choice JSON, so a
content chunk costs one orjson call on a short string.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import zip_longest
from typing import Any, Final

import orjson

from workers.sim.protocol import error_body
from workers.sim.sequences import Job, Seq

DONE: Final = b"data: [DONE]\n\n"


def usage_of(job: Job, details: bool, completion: int | None = None) -> dict[str, Any]:
    req = job.req
    prompt = req.prompt_tokens
    if completion is None:
        completion = sum(s.emitted for s in job.seqs)
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "total_tokens": prompt + completion,
        "completion_tokens": completion,
        "prompt_tokens_details": None,
    }
    if details:
        cached = sum(s.cached_tokens for s in job.seqs[:: req.n])
        usage["prompt_tokens_details"] = {"cached_tokens": cached}
    return usage


def error_frame(message: str, status: int = 500) -> bytes:
    return b"data: " + orjson.dumps(error_body(message, status)) + b"\n\n"


# -- logprobs --------------------------------------------------------------------------------


def _logprob(seq: Seq, position: int) -> float:
    base = seq.index * 7919 + (seq.job.req.seed or 0)
    # Each sequence has its own (un)certainty, so a seed's answers differ in mean logprob
    # (about -0.08 to -0.9) as real answers do: cascade checks have something to tell apart.
    scale = 0.25 + 2.5 * ((base * 40503 + 12345) % 1009) / 1009
    return -round((((position * 2654435761 + base) % 10007) / 10007.0) ** 2 * scale, 4)


def _alternatives(seq: Seq, position: int, count: int, words: Sequence[str]) -> list[str]:
    return [words[(position * 31 + j * 97 + seq.index) % len(words)] for j in range(count)]


def chat_logprobs(seq: Seq, start: int, end: int, top: int, words: Sequence[str]) -> dict[str, Any]:
    content = []
    for position in range(start, end):
        token = seq.plan.span(position, position + 1)
        value = _logprob(seq, position)
        alternatives = [
            {"token": t, "logprob": round(value - 1.0 - j, 4), "bytes": list(t.encode())}
            for j, t in enumerate(_alternatives(seq, position, max(0, top - 1), words))
        ]
        chosen = {"token": token, "logprob": value, "bytes": list(token.encode())}
        content.append({**chosen, "top_logprobs": [chosen, *alternatives] if top else []})
    return {"content": content}


def completion_logprobs(
    seq: Seq, start: int, end: int, top: int, words: Sequence[str], offset: int
) -> dict[str, Any]:
    tokens, values, offsets, tops = [], [], [], []
    for position in range(start, end):
        token = seq.plan.span(position, position + 1)
        value = _logprob(seq, position)
        tokens.append(token)
        values.append(value)
        offsets.append(offset)
        offset += len(token)
        alternatives = _alternatives(seq, position, top, words)
        tops.append(
            {token: value, **{t: round(value - 1.0 - j, 4) for j, t in enumerate(alternatives)}}
        )
    return {
        "text_offset": offsets,
        "token_logprobs": values,
        "tokens": tokens,
        "top_logprobs": tops,
    }


# -- non-streaming ---------------------------------------------------------------------------


def chat_response(job: Job, details: bool, words: Sequence[str]) -> dict[str, Any]:
    req = job.req
    choices = []
    for seq in job.seqs:
        plan = seq.plan
        message: dict[str, Any] = {"role": "assistant", "reasoning_content": None}
        if plan.tool is not None:
            message["content"] = None
            message["tool_calls"] = [
                {
                    "id": plan.tool.id,
                    "type": "function",
                    "function": {
                        "name": plan.tool.name,
                        "arguments": plan.args_span(0, seq.emitted),
                    },
                }
            ]
        else:
            message["content"] = plan.content(seq.emitted)
            message["tool_calls"] = []
        logprobs = (
            chat_logprobs(seq, 0, seq.emitted, req.logprobs, words)
            if req.logprobs is not None
            else None
        )
        choices.append(
            {
                "index": seq.index,
                "message": message,
                "logprobs": logprobs,
                "finish_reason": plan.finish_reason,
                "stop_reason": plan.stop_reason,
            }
        )
    return {
        "id": req.request_id,
        "object": "chat.completion",
        "created": req.created,
        "model": req.model,
        "choices": choices,
        "service_tier": None,
        "system_fingerprint": None,
        "usage": usage_of(job, details),
        "prompt_logprobs": None,
        "kv_transfer_params": None,
    }


def completion_response(job: Job, details: bool, words: Sequence[str]) -> dict[str, Any]:
    req = job.req
    choices = []
    for seq in job.seqs:
        prefix = req.prompts[seq.index // req.n].text if req.echo else ""
        logprobs = (
            completion_logprobs(seq, 0, seq.emitted, req.logprobs, words, len(prefix))
            if req.logprobs is not None
            else None
        )
        choices.append(
            {
                "index": seq.index,
                "text": prefix + seq.plan.content(seq.emitted),
                "logprobs": logprobs,
                "finish_reason": seq.plan.finish_reason,
                "stop_reason": seq.plan.stop_reason,
                "prompt_logprobs": None,
            }
        )
    return {
        "id": req.request_id,
        "object": "text_completion",
        "created": req.created,
        "model": req.model,
        "choices": choices,
        "service_tier": None,
        "system_fingerprint": None,
        "usage": usage_of(job, details),
        "kv_transfer_params": None,
    }


# -- streaming -------------------------------------------------------------------------------


class StreamWriter:
    """Turns a job's progress into SSE frames; remembers what each choice has been sent."""

    def __init__(self, job: Job, details: bool, words: Sequence[str]) -> None:
        req = job.req
        self.job = job
        self.details = details
        self.words = words
        self.chat = req.kind == "chat"
        kind = b"chat.completion.chunk" if self.chat else b"text_completion"
        self.head = (
            b'data: {"id":'
            + orjson.dumps(req.request_id)
            + b',"object":"'
            + kind
            + b'","created":'
            + str(req.created).encode()
            + b',"model":'
            + orjson.dumps(req.model)
            + b',"choices":['
        )
        self.named: set[int] = set()
        self.finished: set[int] = set()
        self.started = False

    def _frame(self, choice: bytes, seq: Seq | None = None) -> bytes:
        if self.job.req.continuous_usage and seq is not None:
            usage = usage_of(self.job, self.details, completion=seq.sent)
            return self.head + choice + b'],"usage":' + orjson.dumps(usage) + b"}\n\n"
        return self.head + choice + b"]}\n\n"

    def _start(self) -> bytes:
        """vLLM's first chat chunk per choice: the role and empty content.

        Like vLLM, it goes out with the first engine output (after prefill), not with the
        response headers.
        """
        self.started = True
        if not self.chat:
            return b""
        return b"".join(
            self._frame(
                b'{"index":%d,"delta":{"role":"assistant","content":""},"logprobs":null,'
                b'"finish_reason":null}' % seq.index,
                seq,
            )
            for seq in self.job.seqs
        )

    def progress(self) -> bytes:
        """Frames for everything generated since the last call (one per step in instant mode).

        With several choices, their frames interleave step by step, as in vLLM's output.
        """
        if not self.started:
            if not any(seq.emitted for seq in self.job.seqs):
                return b""
            return self._start() + self.progress()
        streams: list[list[bytes]] = []
        for seq in self.job.seqs:
            if seq.index in self.finished:
                continue
            frames: list[bytes] = []
            if seq.boundaries:
                for end in seq.boundaries:
                    if end > seq.sent:
                        frames.append(
                            self._delta(seq, seq.sent, end, end >= seq.emitted and seq.done)
                        )
                seq.boundaries.clear()
            elif seq.emitted > seq.sent or seq.done:
                frames.append(self._delta(seq, seq.sent, seq.emitted, seq.done))
            if frames:
                streams.append(frames)
        if len(streams) == 1:
            return b"".join(streams[0])
        return b"".join(b"".join(step) for step in zip_longest(*streams, fillvalue=b""))

    def _delta(self, seq: Seq, start: int, end: int, final: bool) -> bytes:
        seq.sent = end
        if final and seq.fail:
            # An injected failure ends with the error frame instead of a finish_reason.
            self.finished.add(seq.index)
            final = False
        if final:
            self.finished.add(seq.index)
        req = self.job.req
        plan = seq.plan
        if self.chat:
            delta: dict[str, Any] | None
            if plan.tool is not None:
                delta = self._tool_delta(seq, start, end, final)
                if delta is None:
                    return b""
            else:
                text = plan.span(start, end)
                if not final and req.logprobs is None:
                    if not text:
                        return b""
                    return self._frame(
                        b'{"index":%d,"delta":{"content":%s},"logprobs":null,'
                        b'"finish_reason":null}' % (seq.index, orjson.dumps(text)),
                        seq,
                    )
                delta = {"content": text}
            choice: dict[str, Any] = {"index": seq.index, "delta": delta}
            choice["logprobs"] = (
                chat_logprobs(seq, start, end, req.logprobs, self.words)
                if req.logprobs is not None
                else None
            )
        else:
            text = plan.span(start, end)
            prefix = ""
            if start == 0 and req.echo:
                prefix = req.prompts[seq.index // req.n].text
            if not text and not prefix and not final:
                return b""
            choice = {"index": seq.index, "text": prefix + text}
            choice["logprobs"] = (
                completion_logprobs(seq, start, end, req.logprobs, self.words, 0)
                if req.logprobs is not None
                else None
            )
        choice["finish_reason"] = plan.finish_reason if final else None
        if final or not self.chat:
            choice["stop_reason"] = plan.stop_reason if final else None
        return self._frame(orjson.dumps(choice), seq)

    def _tool_delta(self, seq: Seq, start: int, end: int, final: bool) -> dict[str, Any] | None:
        tool = seq.plan.tool
        assert tool is not None
        call: dict[str, Any] = {"index": 0}
        if seq.index not in self.named and (end >= tool.args_start or final):
            self.named.add(seq.index)
            call.update(
                id=tool.id,
                type="function",
                function={"name": tool.name, "arguments": seq.plan.args_span(0, end)},
            )
        else:
            fragment = seq.plan.args_span(start, end)
            if fragment:
                call["function"] = {"arguments": fragment}
        if len(call) == 1:
            return {} if final else None
        return {"tool_calls": [call]}

    def end(self) -> bytes:
        """The closing frames: the usage chunk if asked for, an error frame, then [DONE]."""
        job = self.job
        out = []
        if job.error is not None:
            out.append(error_frame(job.error, 500))
        elif job.req.include_usage:
            out.append(
                self.head + b'],"usage":' + orjson.dumps(usage_of(job, self.details)) + b"}\n\n"
            )
        out.append(DONE)
        return b"".join(out)
