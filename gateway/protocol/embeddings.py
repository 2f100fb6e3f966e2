from __future__ import annotations

from typing import Literal

from pydantic import Field

from gateway.protocol.common import OpenAIModel


class EmbeddingRequest(OpenAIModel):
    model: str = Field(min_length=1, max_length=256)
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)
    user: str | None = Field(default=None, max_length=256)

    def texts(self) -> list[str] | None:
        """The inputs as strings, or None when they are token ids."""
        if isinstance(self.input, str):
            return [self.input]
        if all(isinstance(x, str) for x in self.input):
            return list(self.input)  # type: ignore[arg-type]
        return None
