"""What the cache stores and what a lookup returns."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt

from cache.index import IndexedEntry

__all__ = ["CacheEntry", "Hit", "StoreListener"]


@dataclass(slots=True)
class CacheEntry:
    entry_id: str
    exact: str
    filter: str
    text: str
    response: dict[str, Any]
    vector: npt.NDArray[np.float32] | None
    tenant: str
    team: str | None
    model: str
    created: float
    expires: float

    def indexed(self) -> IndexedEntry:
        return IndexedEntry(
            self.entry_id, self.filter, self.text, self.expires, self.tenant, self.team, self.model
        )

    def matches(self, tenant: str, team: str | None, model: str | None) -> bool:
        """Whether a purge of (tenant, team, model) covers this entry."""
        return (
            self.tenant == tenant
            and (team is None or self.team == team)
            and (model is None or self.model == model)
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.entry_id,
            "exact": self.exact,
            "filter": self.filter,
            "text": self.text,
            "response": self.response,
            "vector": None if self.vector is None else encode_vector(self.vector),
            "tenant": self.tenant,
            "team": self.team,
            "model": self.model,
            "created": self.created,
            "expires": self.expires,
        }

    @classmethod
    def from_json(cls, row: dict[str, Any]) -> CacheEntry:
        vector = row.get("vector")
        return cls(
            entry_id=row["id"],
            exact=row["exact"],
            filter=row["filter"],
            text=row["text"],
            response=row["response"],
            vector=None if vector is None else decode_vector(vector),
            tenant=row["tenant"],
            team=row.get("team"),
            model=row["model"],
            created=float(row["created"]),
            expires=float(row["expires"]),
        )


def encode_vector(vector: npt.NDArray[np.float32]) -> str:
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")


def decode_vector(data: str | bytes) -> npt.NDArray[np.float32]:
    raw = base64.b64decode(data) if isinstance(data, str) else data
    return np.frombuffer(raw, dtype="<f4").astype(np.float32)


@dataclass(frozen=True, slots=True)
class Hit:
    """A cached response for a request. `similarity` is 1.0 for exact hits; `score` is
    the verifier's probability that the cached question is a duplicate (None if exact)."""

    entry_id: str
    response: dict[str, Any]
    kind: Literal["exact", "semantic"]
    similarity: float
    score: float | None
    created: float


class StoreListener(Protocol):
    """Receives every entry that appears in or leaves a store (local or remote writes)."""

    def add(self, entry: IndexedEntry, vector: npt.NDArray[np.float32]) -> None: ...

    def remove(self, entry_ids: list[str]) -> int: ...
