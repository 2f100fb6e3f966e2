from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from gateway.protocol.common import OpenAIModel, SamplingFields


class ChatMessage(OpenAIModel):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None


class ChatCompletionRequest(SamplingFields):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)

    @field_validator("response_format")
    @classmethod
    def _known_format(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        if v is not None and v.get("type") not in ("text", "json_object", "json_schema"):
            raise ValueError("type must be one of 'text', 'json_object', 'json_schema'")
        return v

    def output_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    def last_user_text(self) -> str:
        for m in reversed(self.messages):
            if m.role == "user":
                c = m.content
                if isinstance(c, str):
                    return c
                if isinstance(c, list):
                    return " ".join(str(p.get("text", "")) for p in c if p.get("type") == "text")
        return ""
