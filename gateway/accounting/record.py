"""One finished request as the ledger stores it, and its daily rollup."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import orjson

__all__ = ["SUMS", "Record", "rollup"]


@dataclass(slots=True)
class Record:
    request_id: str
    ts: datetime
    tenant_id: str
    team_id: str
    key_id: str
    endpoint: str
    requested_model: str
    end_user: str | None = None
    finished_at: datetime | None = None
    pool: str | None = None
    served_model: str | None = None
    cache_status: str = "bypass"
    rag_used: bool = False
    route_decision: str | None = None
    route_score: float | None = None
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    cost_micros: int = 0
    baseline_micros: int = 0
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    status: str = "ok"
    error_type: str | None = None
    cascade_micros: int = 0  # a cascade's discarded small answer, included in cost_micros
    # Not stored in the ledger row: that answer's tokens (counted against TPM limits).
    cascade_tokens: int = 0
    # Not stored in the ledger row, used for rollups: savings split by cause.
    cache_savings_micros: int = 0
    routing_savings_micros: int = 0
    large_call: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> bytes:
        return orjson.dumps(self)  # orjson serialises dataclasses natively (no asdict copy)

    @classmethod
    def from_json(cls, raw: bytes | str) -> Record:
        data = orjson.loads(raw)
        for k in ("ts", "finished_at"):
            if data.get(k):
                data[k] = datetime.fromisoformat(data[k])
        return cls(**data)


SUMS = ("requests", "errors", "cache_hits", "large_calls", "prompt_tokens", "completion_tokens",
         "cost_micros", "baseline_micros", "cache_savings_micros", "routing_savings_micros")


def rollup(records: Sequence[Record]) -> list[dict[str, Any]]:
    """Sum records per (day, tenant, team, key, model) for the daily rollup table."""
    acc: dict[tuple[date, str, str, str, str], dict[str, Any]] = {}
    for r in records:
        k = (r.ts.astimezone(UTC).date(), r.tenant_id, r.team_id, r.key_id,
             r.served_model or r.requested_model)
        row = acc.get(k)
        if row is None:
            row = {"day": k[0], "tenant_id": k[1], "team_id": k[2], "key_id": k[3],
                   "model": k[4], **dict.fromkeys(SUMS, 0)}
            acc[k] = row
        row["requests"] += 1
        row["errors"] += r.status != "ok"
        row["cache_hits"] += r.cache_status == "hit"
        row["large_calls"] += r.large_call
        row["prompt_tokens"] += r.prompt_tokens
        row["completion_tokens"] += r.completion_tokens
        row["cost_micros"] += r.cost_micros
        row["baseline_micros"] += r.baseline_micros
        row["cache_savings_micros"] += r.cache_savings_micros
        row["routing_savings_micros"] += r.routing_savings_micros
    return list(acc.values())
