"""Request parsing and validation for the OpenAI routes, with vLLM's error messages.

Bodies are plain dicts (orjson) checked by hand: unknown fields are ignored, as vLLM does,
and the hot path stays free of model-validation overhead.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from workers.sim.plans import PlanSpec
from workers.sim.tokenizer import Tokenizer, message_text

ERROR_TYPES: Final = {
    400: "BadRequestError",
    404: "NotFoundError",
    429: "TooManyRequestsError",
    500: "InternalServerError",
    501: "NotImplementedError",
    503: "ServiceUnavailableError",
}
MAX_LOGPROBS: Final = 20
ROLES: Final = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


class ApiError(Exception):
    """An error answered as vLLM does: {"error": {"message", "type", "param", "code"}}."""

    def __init__(self, message: str, status: int = 400, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.param = param

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.status, self.param)


def error_body(message: str, status: int, param: str | None = None) -> dict[str, Any]:
    kind = ERROR_TYPES.get(status, "InternalServerError")
    return {"error": {"message": message, "type": kind, "param": param, "code": status}}


@dataclass(slots=True)
class Prompt:
    ids: list[int]
    text: str


@dataclass(slots=True)
class SimOptions:
    """Per-request simulator controls from the body's optional "sim" object."""

    fault: str | None = None  # "error" | "midstream_error" | "stall"
    after_tokens: int | None = None
    stall_ms: float | None = None
    output: str | None = None


@dataclass(slots=True)
class GenRequest:
    """A parsed /v1/chat/completions or /v1/completions request."""

    kind: str  # "chat" | "completion"
    request_id: str
    created: int
    model: str
    prompts: list[Prompt]
    n: int
    max_tokens: int | None
    stream: bool
    include_usage: bool
    continuous_usage: bool
    logprobs: int | None  # number of top logprobs; None = no logprobs
    echo: bool
    seed: int | None
    plan_specs: list[PlanSpec]
    sim: SimOptions = field(default_factory=SimOptions)
    x_request_id: str | None = None

    @property
    def prompt_tokens(self) -> int:
        return sum(len(p.ids) for p in self.prompts)


@dataclass(slots=True)
class ParseContext:
    model_names: Sequence[str]
    max_model_len: int
    tokenizer: Tokenizer
    output: str
    # Response ids: random like vLLM's uuid4 hex, from a generator seeded once (a syscall
    # per request is measurable at thousands of requests per second).
    ids: random.Random = field(default_factory=lambda: random.Random(os.urandom(16)))


def _int(body: Mapping[str, Any], name: str, default: int | None = None) -> int | None:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise ApiError(f"{name} must be an integer", param=name)
    return value


def _number(body: Mapping[str, Any], name: str) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ApiError(f"{name} must be a number", param=name)
    return float(value)


def _check_model(body: Mapping[str, Any], ctx: ParseContext) -> str:
    model = body.get("model")
    if model is None or model == "":
        return ctx.model_names[0]
    if model not in ctx.model_names:
        raise ApiError(f"The model `{model}` does not exist.", status=404, param="model")
    return str(model)


def _common(body: Mapping[str, Any]) -> tuple[int, int | None, bool, bool, bool]:
    n = _int(body, "n", 1) or 1
    if n < 1:
        raise ApiError("n must be at least 1.", param="n")
    max_tokens = _int(body, "max_completion_tokens") or _int(body, "max_tokens")
    if max_tokens is not None and max_tokens < 1:
        raise ApiError(f"max_tokens must be at least 1, got {max_tokens}.", param="max_tokens")
    temperature = _number(body, "temperature")
    if temperature is not None and temperature < 0:
        raise ApiError(f"temperature must be non-negative, got {temperature}.", param="temperature")
    top_p = _number(body, "top_p")
    if top_p is not None and not 0 < top_p <= 1:
        raise ApiError(f"top_p must be in (0, 1], got {top_p}.", param="top_p")
    stream = bool(body.get("stream") or False)
    options = body.get("stream_options")
    if options is not None and not stream:
        raise ApiError(
            "Stream options can only be defined when `stream=True`.", param="stream_options"
        )
    options = options if isinstance(options, dict) else {}
    return (
        n,
        max_tokens,
        stream,
        bool(options.get("include_usage")),
        bool(options.get("continuous_usage_stats")),
    )


def _stop(body: Mapping[str, Any]) -> list[str]:
    stop = body.get("stop")
    if stop is None:
        return []
    if isinstance(stop, str):
        return [stop]
    if isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        return stop
    raise ApiError("stop must be a string or a list of strings", param="stop")


def _sim_options(body: Mapping[str, Any]) -> SimOptions:
    sim = body.get("sim")
    if not isinstance(sim, dict):
        return SimOptions()
    fault = sim.get("fault")
    if fault not in (None, "error", "midstream_error", "stall"):
        raise ApiError("sim.fault must be one of error, midstream_error, stall", param="sim")
    output = sim.get("output")
    if output not in (None, "lorem", "echo"):
        raise ApiError("sim.output must be lorem or echo", param="sim")
    after = sim.get("after_tokens")
    stall_ms = sim.get("stall_ms")
    return SimOptions(
        fault=fault,
        after_tokens=int(after) if isinstance(after, int | float) else None,
        stall_ms=float(stall_ms) if isinstance(stall_ms, int | float) else None,
        output=output,
    )


def _request_id(
    prefix: str, body: Mapping[str, Any], x_request_id: str | None, ctx: ParseContext
) -> str:
    base = x_request_id or body.get("request_id") or f"{ctx.ids.getrandbits(128):032x}"
    return f"{prefix}-{base}"


def _max_tokens_for(prompt_len: int, max_tokens: int | None, max_model_len: int, chat: bool) -> int:
    if prompt_len >= max_model_len:
        what = "messages" if chat else "prompt"
        raise ApiError(
            f"This model's maximum context length is {max_model_len} tokens. However, your "
            f"request has {prompt_len} input tokens. Please reduce the length of the input "
            f"{what}.",
        )
    if max_tokens is None:
        return max_model_len - prompt_len
    if prompt_len + max_tokens > max_model_len:
        raise ApiError(
            f"'max_tokens' or 'max_completion_tokens' is too large: {max_tokens}. This model's "
            f"maximum context length is {max_model_len} tokens and your request has "
            f"{prompt_len} input tokens ({max_tokens} > {max_model_len} - {prompt_len}).",
        )
    return max_tokens


def _tool_to_call(body: Mapping[str, Any], messages: Sequence[Mapping[str, Any]]) -> Any:
    """The function definition the simulated model calls, or None for a text answer."""
    tools = body.get("tools")
    choice = body.get("tool_choice")
    if not tools:
        if choice not in (None, "none", "auto"):
            raise ApiError("When using `tool_choice`, `tools` must be set.", param="tool_choice")
        return None
    if not isinstance(tools, list):
        raise ApiError("tools must be a list", param="tools")
    functions = []
    for tool in tools:
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or not function.get("name"):
            raise ApiError(
                "each tool must be {'type': 'function', 'function': {'name': ...}}", param="tools"
            )
        functions.append(function)
    if choice == "none":
        return None
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        for function in functions:
            if function.get("name") == name:
                return function
        raise ApiError(f"Tool '{name}' has not been passed in `tools`.", param="tool_choice")
    if choice not in (None, "auto", "required"):
        raise ApiError(f"Invalid tool_choice: {choice!r}", param="tool_choice")
    # With "auto", a simulated model answers in text once a tool result is in the
    # conversation, so that agent loops terminate.
    if choice != "required" and messages and messages[-1].get("role") == "tool":
        return None
    return functions[0]


def _json_format(body: Mapping[str, Any]) -> tuple[bool, Mapping[str, Any] | None]:
    fmt = body.get("response_format")
    if not isinstance(fmt, dict):
        return False, None
    kind = fmt.get("type")
    if kind == "json_object":
        return True, None
    if kind == "json_schema":
        spec = fmt.get("json_schema") or {}
        schema = spec.get("schema") if isinstance(spec, dict) else None
        return True, schema if isinstance(schema, dict) else None
    if kind in (None, "text"):
        return False, None
    raise ApiError(f"Unsupported response_format type: {kind}", param="response_format")


def parse_chat(body: Mapping[str, Any], ctx: ParseContext, x_request_id: str | None) -> GenRequest:
    model = _check_model(body, ctx)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError("messages must be a non-empty list", param="messages")
    for message in messages:
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise ApiError(
                "each message needs a role among " + ", ".join(sorted(ROLES)), param="messages"
            )
    n, max_tokens, stream, include_usage, continuous = _common(body)
    logprobs: int | None = None
    top = _int(body, "top_logprobs")
    if body.get("logprobs"):
        logprobs = top or 0
        if not 0 <= logprobs <= MAX_LOGPROBS:
            raise ApiError(
                f"top_logprobs must be between 0 and {MAX_LOGPROBS}", param="top_logprobs"
            )
    elif top:
        raise ApiError(
            "when using `top_logprobs`, `logprobs` must be set to true.", param="top_logprobs"
        )
    tool = _tool_to_call(body, messages)
    json_mode, schema = _json_format(body)
    try:
        ids = ctx.tokenizer.chat_prompt_ids(messages, body.get("tools"))
        users = [m for m in messages if m.get("role") == "user"] or messages
        echo_text = message_text(users[-1].get("content"))
    except ValueError as exc:
        raise ApiError(str(exc), param="messages") from exc
    limit = _max_tokens_for(len(ids), max_tokens, ctx.max_model_len, chat=True)
    sim = _sim_options(body)
    spec = PlanSpec(
        mode=sim.output or ctx.output,
        echo_text=echo_text,
        max_tokens=limit,
        min_tokens=_int(body, "min_tokens", 0) or 0,
        ignore_eos=bool(body.get("ignore_eos")),
        stop=_stop(body),
        json_schema=schema,
        json_mode=json_mode,
        tool=tool,
    )
    return GenRequest(
        kind="chat",
        request_id=_request_id("chatcmpl", body, x_request_id, ctx),
        created=int(time.time()),
        model=model,
        prompts=[Prompt(ids, echo_text)],
        n=n,
        max_tokens=max_tokens,
        stream=stream,
        include_usage=include_usage,
        continuous_usage=continuous,
        logprobs=logprobs,
        echo=False,
        seed=_int(body, "seed"),
        plan_specs=[spec],
        sim=sim,
        x_request_id=x_request_id,
    )


def _completion_prompts(body: Mapping[str, Any], tokenizer: Tokenizer) -> list[Prompt]:
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        return [Prompt(tokenizer.encode(prompt), prompt)]
    if isinstance(prompt, list) and prompt:
        if all(isinstance(p, str) for p in prompt):
            return [Prompt(tokenizer.encode(p), p) for p in prompt]
        if all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
            return [Prompt(list(prompt), tokenizer.decode(prompt))]
        if all(isinstance(p, list) and p and all(isinstance(t, int) for t in p) for p in prompt):
            return [Prompt(list(p), tokenizer.decode(p)) for p in prompt]
    raise ApiError("prompt must be a string, a list of strings, or token ids", param="prompt")


def parse_completion(
    body: Mapping[str, Any], ctx: ParseContext, x_request_id: str | None
) -> GenRequest:
    model = _check_model(body, ctx)
    n, max_tokens, stream, include_usage, continuous = _common(body)
    if body.get("suffix") is not None:
        raise ApiError("suffix is not currently supported", param="suffix")
    logprobs = _int(body, "logprobs")
    if logprobs is not None and not 0 <= logprobs <= MAX_LOGPROBS:
        raise ApiError(f"logprobs must be between 0 and {MAX_LOGPROBS}", param="logprobs")
    try:
        prompts = _completion_prompts(body, ctx.tokenizer)
    except (KeyError, OverflowError) as exc:
        raise ApiError(f"invalid token id in prompt: {exc}", param="prompt") from exc
    sim = _sim_options(body)
    json_mode, schema = _json_format(body)
    stop = _stop(body)
    specs = [
        PlanSpec(
            mode=sim.output or ctx.output,
            echo_text=p.text,
            max_tokens=_max_tokens_for(
                len(p.ids),
                max_tokens if max_tokens is not None else 16,
                ctx.max_model_len,
                chat=False,
            ),
            min_tokens=_int(body, "min_tokens", 0) or 0,
            ignore_eos=bool(body.get("ignore_eos")),
            stop=stop,
            json_schema=schema,
            json_mode=json_mode,
            tool=None,
        )
        for p in prompts
    ]
    return GenRequest(
        kind="completion",
        request_id=_request_id("cmpl", body, x_request_id, ctx),
        created=int(time.time()),
        model=model,
        prompts=prompts,
        n=n,
        max_tokens=max_tokens,
        stream=stream,
        include_usage=include_usage,
        continuous_usage=continuous,
        logprobs=logprobs,
        echo=bool(body.get("echo")),
        seed=_int(body, "seed"),
        plan_specs=specs,
        sim=sim,
        x_request_id=x_request_id,
    )
