"""What the engine schedules: sequences (one per choice), jobs (one per request), steps."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field

from workers.sim.plans import Plan
from workers.sim.protocol import GenRequest


@dataclass(slots=True, eq=False)
class Seq:
    """One generated choice of a request (vLLM schedules each of the n choices separately)."""

    job: Job
    index: int
    plan: Plan
    prompt_ids: list[int]
    limit: int  # tokens this sequence will produce (the plan, cut by an injected failure)
    to_prefill: int  # tokens to compute before the next token (grows after a preemption)
    rng: random.Random  # seeded per choice when the request has a seed, else the engine's
    computed: int = 0
    emitted: int = 0
    sent: int = 0  # tokens the HTTP handler has written
    done: bool = False
    admitted: bool = False
    blocks: int = 0
    cached_tokens: int = 0
    fail: bool = False  # an injected failure ends the sequence at `limit`
    stall_after: int | None = None
    stall_ms: float = 0.0
    stall_until: float = 0.0
    t_admit: float = 0.0
    t_first: float | None = None
    t_last: float = 0.0
    boundaries: list[int] | None = None  # step ends, kept in instant mode for streaming


@dataclass(slots=True, eq=False)
class Job:
    """A request in the engine, with the event its HTTP handler waits on."""

    req: GenRequest
    seqs: list[Seq]
    t_arrival: float
    event: asyncio.Event = field(default_factory=asyncio.Event)
    aborted: bool = False
    error: str | None = None
    stall_wait: float | None = None  # instant mode: the handler must wait this long (ms)
    responded: bool = False  # the last byte is on its way: a disconnect is no abort any more
    recorded: bool = False

    @property
    def finished(self) -> bool:
        return self.aborted or self.error is not None or all(s.done for s in self.seqs)


@dataclass(slots=True)
class Step:
    """One engine iteration: prompt chunks to prefill, sequences to decode, modelled time (s)."""

    prefill: list[tuple[Seq, int]]
    decode: list[Seq]
    duration: float
