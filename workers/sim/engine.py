"""The simulated engine: continuous batching, chunked prefill, KV blocks, speculative decoding.

One asyncio task steps the batch, like vLLM's engine core: at most `max_num_seqs` sequences
run, the rest wait in FIFO order. Each step sleeps for the modelled GPU time, then every
running sequence advances. When the configuration has no costs at all (the `fast` profile)
requests bypass the loop and are generated on the spot (`advance_instant`).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
from collections import deque
from typing import Final

from workers.sim.config import Faults, SimConfig
from workers.sim.kvcache import PrefixCache
from workers.sim.ledger import Stats, UsageLedger, UsageRecord
from workers.sim.metrics import EngineMetrics
from workers.sim.plans import Planner
from workers.sim.protocol import GenRequest
from workers.sim.sequences import Job, Seq, Step

# Timer jitter the scheduler absorbs by starting the next step at the previous deadline.
CATCH_UP_S: Final = 0.005
FOREVER: Final = math.inf
MIDSTREAM_ERROR: Final = "Simulated engine failure during generation."


class Engine:
    def __init__(self, config: SimConfig, planner: Planner) -> None:
        self.config = config
        self.planner = planner
        self.faults = Faults.from_config(config)
        self.stats = Stats()
        self.ledger = UsageLedger()
        # The last request bodies as received, for tests that check what the gateway sent.
        self.recent_bodies: deque[dict[str, object]] = deque(maxlen=200)
        self.metrics = EngineMetrics(
            config.model,
            config.max_model_len,
            config.spec_k,
            {
                "block_size": str(config.block_size),
                "num_gpu_blocks": str(config.num_gpu_blocks),
                "enable_prefix_caching": str(config.enable_prefix_caching),
            },
        )
        self.rng = random.Random(config.seed)
        self.running: list[Seq] = []
        self.waiting: deque[Seq] = deque()
        self.used_blocks = 0
        self.instant_active = 0
        self.prefix = (
            PrefixCache(config.num_gpu_blocks, config.block_size)
            if config.enable_prefix_caching
            else None
        )
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None and not self.config.instant:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def wake(self) -> None:
        self._wake.set()

    # -- requests --------------------------------------------------------------------------

    def pick_fault(self, req: GenRequest) -> str | None:
        """The injected fault for this request: forced by the body, else drawn from the rates."""
        if req.sim.fault is not None:
            return req.sim.fault
        faults = self.faults
        if faults.error_rate and self.rng.random() < faults.error_rate:
            return "error"
        if faults.midstream_error_rate and self.rng.random() < faults.midstream_error_rate:
            return "midstream_error"
        if faults.stall_rate and self.rng.random() < faults.stall_rate:
            return "stall"
        return None

    def make_job(self, req: GenRequest, fault: str | None, now: float) -> Job:
        job = Job(req=req, seqs=[], t_arrival=now)
        for p, (prompt, spec) in enumerate(zip(req.prompts, req.plan_specs, strict=True)):
            for j in range(req.n):
                index = p * req.n + j
                rng = self.rng if req.seed is None else random.Random(req.seed * 1_000_003 + index)
                plan = self.planner.plan(spec, rng)
                seq = Seq(job, index, plan, prompt.ids, plan.n_tokens, len(prompt.ids), rng)
                job.seqs.append(seq)
        first = job.seqs[0]
        if fault == "midstream_error":
            after = req.sim.after_tokens
            if after is None:
                after = self.rng.randint(1, max(1, first.limit - 1))
            first.limit = min(first.limit, max(0, after))
            first.fail = True
        elif fault == "stall":
            after = req.sim.after_tokens
            first.stall_after = self.faults.stall_after_tokens if after is None else after
            stall_ms = req.sim.stall_ms if req.sim.stall_ms is not None else self.faults.stall_ms
            first.stall_ms = stall_ms
        return job

    def submit(self, job: Job) -> None:
        self.waiting.extend(job.seqs)
        self.observe_request(job)
        self._wake.set()

    def abort(self, job: Job) -> None:
        """The client went away: drop the job's sequences from the batch (vLLM's abort)."""
        if job.responded or job.aborted:
            return
        job.aborted = True
        for seq in job.seqs:
            if not seq.done:
                self.abort_seq(seq)
        job.event.set()
        self._wake.set()

    def record(self, job: Job, status: str) -> None:
        """Book the job's reported usage once, when its HTTP response is over."""
        if job.recorded:
            return
        job.recorded = True
        req = job.req
        if status == "completed":
            completion = sum(s.emitted for s in job.seqs)
            self.stats.completed += 1
        else:
            # A stream cut short reports no usage (in vLLM either); what a biller can charge
            # is the text it received, counted by this server's tokenizer (as /tokenize
            # would). Retokenizing a cut can differ by a token from the steps generated.
            completion = sum(self._billable(s) for s in job.seqs)
            if status == "aborted":
                self.stats.aborted += 1
            else:
                self.stats.errored += 1
        self.ledger.record(
            UsageRecord(
                id=req.request_id,
                x_request_id=req.x_request_id,
                model=req.model,
                status=status,
                prompt_tokens=req.prompt_tokens,
                completion_tokens=completion,
                finish_reasons=[
                    s.plan.finish_reason if s.emitted >= s.limit and not s.fail else "abort"
                    for s in job.seqs
                ],
            )
        )

    def _billable(self, seq: Seq) -> int:
        if not seq.sent:
            return 0
        plan = seq.plan
        text = plan.args_span(0, seq.sent) if plan.tool is not None else plan.span(0, seq.sent)
        return len(self.planner.tokenizer.encode(text)) if text else 0

    # -- instant mode ----------------------------------------------------------------------

    def advance_instant(self, job: Job, now: float, keep_boundaries: bool) -> None:
        """Generate every sequence to its end (or to its injected stall) right away."""
        for seq in job.seqs:
            if seq.done:
                continue
            if not seq.admitted:
                seq.admitted = True
                seq.t_admit = seq.t_last = now
                self._start_prefill(seq, now)
                if keep_boundaries:
                    seq.boundaries = []
            stop = seq.limit
            if seq.stall_after is not None and seq.stall_after < stop:
                stop = max(seq.stall_after, seq.emitted)
                job.stall_wait = seq.stall_ms
                seq.stall_after = None
            if seq.emitted < stop and seq.t_first is None:
                seq.t_first = now
                self._on_first_token(seq, now)
                self._emit_instant(seq, 1)  # the prefill step yields the first token
            if not self.config.spec_k and seq.boundaries is None:
                self._emit_instant(seq, stop - seq.emitted)  # no per-step detail needed
            while seq.emitted < stop:
                self._emit_instant(seq, min(self._decode_tokens(seq), stop - seq.emitted))
            if seq.emitted >= seq.limit:
                self._finish_seq(seq, now)
        self._check_failure(job)

    def _emit_instant(self, seq: Seq, n: int) -> None:
        seq.emitted += n
        self.metrics.generation_tokens += n
        if seq.boundaries is not None:
            seq.boundaries.append(seq.emitted)

    # -- the scheduler loop ----------------------------------------------------------------

    def schedule(self, now: float) -> Step | None:
        """Admit waiting sequences and plan the next step; None when nothing can run."""
        self._admit(now)
        step = self._plan_step(now)
        return step if step.prefill or step.decode else None

    def complete(self, step: Step, now: float) -> None:
        """Apply a step once its modelled time has passed."""
        self._apply_step(step.prefill, step.decode, now)

    def run_virtual(self, start: float = 0.0, limit: float = 1e9) -> float:
        """Run to idle on a virtual clock (no sleeping); returns the clock at the end.

        For tests and what-if tables: the same scheduler, without wall-clock noise.
        """
        now = start
        while (self.running or self.waiting) and now < limit:
            step = self.schedule(now)
            if step is None:
                break
            now += step.duration
            self.complete(step, now)
        return now

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        t_next = loop.time()
        while True:
            if not self.running and not self.waiting:
                self._wake.clear()
                await self._wake.wait()
                t_next = loop.time()
            now = loop.time()
            if self.faults.freeze_until > now:
                await self._wait(self.faults.freeze_until - now)
                continue
            step = self.schedule(now)
            if step is None:
                await self._wait(self._next_stall_end(now) - now)
                t_next = loop.time()
                continue
            start = t_next if now - t_next < CATCH_UP_S else now
            deadline = start + step.duration
            delay = deadline - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            t_next = deadline
            self.complete(step, loop.time())

    async def _wait(self, seconds: float) -> None:
        """Sleep up to `seconds`, returning early when a request or a fault change arrives."""
        self._wake.clear()
        if seconds == FOREVER:
            await self._wake.wait()
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=max(0.0, seconds))

    def _admit(self, now: float) -> None:
        config = self.config
        while self.waiting and len(self.running) < config.max_num_seqs:
            seq = self.waiting[0]
            need = self._blocks_for(seq.to_prefill + 1)
            if self.running and self.used_blocks + need > config.num_gpu_blocks:
                break
            self.waiting.popleft()
            if not seq.admitted:
                seq.admitted = True
                seq.t_admit = now
                self._start_prefill(seq, now)
            seq.blocks = need
            self.used_blocks += need
            self.running.append(seq)

    def _plan_step(self, now: float) -> Step:
        config = self.config
        per_seq = 1 + config.spec_k
        decode: list[Seq] = []
        pending: list[Seq] = []
        for seq in self.running:
            if seq.stall_after is not None and seq.emitted >= seq.stall_after:
                seq.stall_after = None
                seq.stall_until = now + seq.stall_ms / 1000.0 if seq.stall_ms else FOREVER
            if seq.stall_until > now:
                continue
            if seq.computed >= seq.to_prefill:
                decode.append(seq)
            else:
                pending.append(seq)
        budget = config.max_num_batched_tokens - len(decode) * per_seq
        prefill: list[tuple[Seq, int]] = []
        prefill_tokens = 0
        for seq in pending:
            if budget <= 0:
                break
            chunk = min(seq.to_prefill - seq.computed, budget)
            prefill.append((seq, chunk))
            prefill_tokens += chunk
            budget -= chunk
        ms = 0.0
        if decode:
            ms += config.itl_ms + config.batch_ms_per_token * (len(decode) * per_seq - 1)
            if config.spec_k:
                ms += config.spec_draft_ms * config.spec_k
        if prefill:
            ms += config.ttft_ms + config.prefill_ms_per_token * prefill_tokens
        if decode or prefill:
            self.metrics.iteration_tokens.observe(len(decode) + prefill_tokens)
        return Step(prefill, decode, ms / 1000.0)

    def _apply_step(self, prefill: list[tuple[Seq, int]], decode: list[Seq], now: float) -> None:
        jobs: dict[int, Job] = {}
        for seq, chunk in prefill:
            if seq.done:
                continue
            seq.computed += chunk
            if seq.computed >= seq.to_prefill:
                if seq.t_first is None:
                    seq.t_first = now
                    self._on_first_token(seq, now)
                self._emit(seq, 1, now)
                jobs[id(seq.job)] = seq.job
        for seq in decode:
            if not seq.done:
                self._emit(seq, self._decode_tokens(seq), now)
                jobs[id(seq.job)] = seq.job
        for seq in [s for s in self.running if s.emitted >= s.limit]:
            self._finish_seq(seq, now)
            jobs[id(seq.job)] = seq.job
        self._grow_blocks()
        for job in jobs.values():
            self._check_failure(job)
            job.event.set()

    def _emit(self, seq: Seq, n: int, now: float) -> None:
        n = min(n, seq.limit - seq.emitted)
        if seq.stall_after is not None:
            n = min(n, max(0, seq.stall_after - seq.emitted))  # stall exactly where asked
        if n <= 0:
            return
        if seq.emitted:
            self.metrics.itl.observe(now - seq.t_last)
            self.metrics.tpot.observe((now - seq.t_last) / n)
        seq.emitted += n
        seq.t_last = now
        self.metrics.generation_tokens += n

    def _decode_tokens(self, seq: Seq) -> int:
        """Tokens one decode step yields: 1 + drafts accepted before the first rejection."""
        k = self.config.spec_k
        if not k:
            return 1
        alpha = self.config.spec_alpha
        accepted = 0
        rand = seq.rng.random
        while accepted < k and rand() < alpha:
            accepted += 1
        metrics = self.metrics
        metrics.spec_drafts += 1
        metrics.spec_draft_tokens += k
        metrics.spec_accepted += accepted
        per_pos = metrics.spec_accepted_per_pos
        for position in range(accepted):
            per_pos[position] += 1
        return 1 + accepted

    def _grow_blocks(self) -> None:
        """Allocate KV blocks for new tokens; preempt the newest sequences when out of blocks."""
        capacity = self.config.num_gpu_blocks
        for seq in self.running:
            need = self._blocks_for(len(seq.prompt_ids) + seq.emitted)
            if need > seq.blocks:
                self.used_blocks += need - seq.blocks
                seq.blocks = need
        while self.used_blocks > capacity and len(self.running) > 1:
            victim = self.running.pop()
            self._free(victim)
            # Recompute-style preemption: prompt and output are prefilled again later.
            victim.computed = 0
            victim.to_prefill = len(victim.prompt_ids) + victim.emitted
            self.waiting.appendleft(victim)
            self.metrics.preemptions += 1

    def _blocks_for(self, tokens: int) -> int:
        return -(-tokens // self.config.block_size)

    def _free(self, seq: Seq) -> None:
        self.used_blocks -= seq.blocks
        seq.blocks = 0

    def _next_stall_end(self, now: float) -> float:
        ends = [s.stall_until for s in self.running if s.stall_until > now]
        return min(ends) if ends else FOREVER

    # -- bookkeeping -----------------------------------------------------------------------

    def observe_request(self, job: Job) -> None:
        metrics = self.metrics
        metrics.request_n.observe(job.req.n)
        if job.req.max_tokens is not None:
            metrics.request_max_tokens.observe(job.req.max_tokens)

    def _start_prefill(self, seq: Seq, now: float) -> None:
        if self.prefix is not None:
            cached = self.prefix.lookup_and_insert(seq.prompt_ids)
            self.metrics.prefix_queries += len(seq.prompt_ids)
            self.metrics.prefix_hits += cached
            seq.cached_tokens = cached
            seq.computed = cached

    def _on_first_token(self, seq: Seq, now: float) -> None:
        metrics = self.metrics
        metrics.prompt_tokens += len(seq.prompt_ids)
        metrics.ttft.observe(now - seq.job.t_arrival)
        metrics.prefill_time.observe(now - seq.t_admit)
        metrics.queue_time.observe(seq.t_admit - seq.job.t_arrival)
        metrics.request_prompt_tokens.observe(len(seq.prompt_ids))

    def _finish_seq(self, seq: Seq, now: float) -> None:
        if seq.done:
            return
        seq.done = True
        if seq in self.running:
            self.running.remove(seq)
            self._free(seq)
        metrics = self.metrics
        finish = seq.plan.finish_reason
        reason = "abort" if seq.fail else ("length" if finish == "length" else "stop")
        metrics.success[reason] += 1
        metrics.e2e.observe(now - seq.job.t_arrival)
        metrics.inference_time.observe(now - seq.t_admit)
        metrics.decode_time.observe(now - (seq.t_first or now))
        metrics.request_generation_tokens.observe(seq.emitted)

    def _check_failure(self, job: Job) -> None:
        """A sequence cut short by an injected mid-stream failure fails its whole request."""
        for seq in job.seqs:
            if seq.done and seq.fail:
                job.error = MIDSTREAM_ERROR
                for other in job.seqs:
                    if not other.done:
                        self.abort_seq(other)
                return

    def abort_seq(self, seq: Seq) -> None:
        seq.done = True
        self.metrics.success["abort"] += 1
        if seq in self.running:
            self.running.remove(seq)
            self._free(seq)
        else:
            with contextlib.suppress(ValueError):
                self.waiting.remove(seq)

    # -- views -----------------------------------------------------------------------------

    @property
    def num_running(self) -> int:
        return len(self.running) + self.instant_active

    @property
    def num_waiting(self) -> int:
        return len(self.waiting)

    @property
    def kv_usage(self) -> float:
        return min(1.0, self.used_blocks / self.config.num_gpu_blocks)

    def render_metrics(self) -> str:
        return self.metrics.render(self.num_running, self.num_waiting, self.kv_usage)
