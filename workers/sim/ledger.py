"""What the simulator saw and billed: request counters (/sim/stats) and usage (/sim/usage).

Tests compare these with the gateway: an abort is visible here as `aborted`, and the usage
ledger holds the tokens the simulator *reported* — for an aborted stream, the completion
tokens it had already written to the client.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Final

RECENT_LIMIT: Final = 2000
STATUSES: Final = ("completed", "aborted", "error")


@dataclass(slots=True)
class Stats:
    received: int = 0  # generation requests that reached the server
    rejected: int = 0  # answered 4xx (validation, unknown model, context overflow)
    completed: int = 0
    aborted: int = 0  # the client went away before the response was complete
    errored: int = 0  # injected errors (before the first byte or mid-stream)
    in_flight: int = 0

    def to_dict(self) -> dict[str, int]:
        return {
            "received": self.received,
            "rejected": self.rejected,
            "completed": self.completed,
            "aborted": self.aborted,
            "errored": self.errored,
            "in_flight": self.in_flight,
        }


@dataclass(slots=True)
class UsageRecord:
    id: str
    x_request_id: str | None
    model: str
    status: str
    prompt_tokens: int
    completion_tokens: int
    finish_reasons: list[str | None]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "x_request_id": self.x_request_id,
            "model": self.model,
            "status": self.status,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "finish_reasons": self.finish_reasons,
        }


@dataclass(slots=True)
class UsageLedger:
    prompt_tokens: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATUSES, 0))
    completion_tokens: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATUSES, 0))
    requests: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATUSES, 0))
    recent: deque[UsageRecord] = field(default_factory=lambda: deque(maxlen=RECENT_LIMIT))

    def record(self, entry: UsageRecord) -> None:
        self.prompt_tokens[entry.status] += entry.prompt_tokens
        self.completion_tokens[entry.status] += entry.completion_tokens
        self.requests[entry.status] += 1
        self.recent.append(entry)

    def to_dict(self, limit: int = 100, request_id: str | None = None) -> dict[str, Any]:
        prompt = sum(self.prompt_tokens.values())
        completion = sum(self.completion_tokens.values())
        records = list(self.recent)
        if request_id is not None:
            records = [r for r in records if request_id in (r.id, r.x_request_id)]
        return {
            "requests": sum(self.requests.values()),
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "by_status": {
                status: {
                    "requests": self.requests[status],
                    "prompt_tokens": self.prompt_tokens[status],
                    "completion_tokens": self.completion_tokens[status],
                }
                for status in STATUSES
            },
            "recent": [r.to_dict() for r in records[-limit:]] if limit > 0 else [],
        }
