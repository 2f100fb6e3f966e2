from __future__ import annotations

from pydantic import Field

from gateway.protocol.common import SamplingFields


class CompletionRequest(SamplingFields):
    prompt: str | list[str] | list[int] | list[list[int]] = Field(min_length=1)
    logprobs: int | None = Field(default=None, ge=0, le=20)
    echo: bool | None = None

    def output_limit(self) -> int | None:
        return self.max_tokens or 16  # OpenAI's default for legacy completions

    def prompt_text(self) -> str:
        p = self.prompt
        if isinstance(p, str):
            return p
        return "\n".join(x for x in p if isinstance(x, str))
