from __future__ import annotations

from typing import Any, Literal, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.errors import InvalidRequest


class OpenAIModel(BaseModel):
    """Base of request models: unknown fields are kept and forwarded to vLLM."""

    model_config = ConfigDict(extra="allow")


class StreamOptions(OpenAIModel):
    include_usage: bool | None = None


class RagControls(BaseModel):
    model_config = ConfigDict(extra="forbid")
    collection: str = Field(min_length=1)
    top_k: int = Field(default=5, ge=1, le=50)


class FrugateControls(BaseModel):
    """Per-request controls, sent as `extra_body={"frugate": {...}}` by the openai SDK."""

    model_config = ConfigDict(extra="forbid")
    cache: Literal["no-cache", "no-store", "no-cache,no-store", "bypass", "default"] | None = None
    cache_ttl: int | None = Field(default=None, ge=1, le=30 * 86400)
    rag: RagControls | None = None
    route: Literal["small", "large"] | None = None


class SamplingFields(OpenAIModel):
    """Fields shared by chat and text completions that the gateway itself reads."""

    model: str = Field(min_length=1, max_length=256)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    n: int = Field(default=1, ge=1, le=128)
    seed: int | None = None
    stop: str | list[str] | None = None
    user: str | None = Field(default=None, max_length=256)
    frugate: FrugateControls | None = None


M = TypeVar("M", bound=BaseModel)


def parse_body(raw: bytes, model: type[M]) -> tuple[M, dict[str, Any]]:
    """Decode and validate a JSON request body; returns the model and the raw dict to forward."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(
            f"We could not parse the JSON body of your request ({exc.msg}). The body must be valid "
            "UTF-8 JSON.",
            code="invalid_json",
        ) from None
    if not isinstance(data, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_json")
    try:
        return model.model_validate(data), data
    except ValidationError as exc:
        raise validation_error(exc) from None


def validation_error(exc: ValidationError) -> InvalidRequest:
    err = exc.errors(include_url=False)[0]
    loc = err["loc"]
    param = ".".join(str(p) for p in loc) if loc else None
    if err["type"] == "missing":
        msg = f"Missing required parameter: '{param}'."
        return InvalidRequest(msg, param=param, code="missing_required_parameter")
    value = err.get("input")
    shown = repr(value) if not isinstance(value, dict | list) else type(value).__name__
    if len(shown) > 80:
        shown = shown[:77] + "..."
    msg = f"Invalid value for '{param}': {err['msg']} (got {shown})."
    return InvalidRequest(msg, param=param, code="invalid_value")
