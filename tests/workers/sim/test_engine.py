"""The scheduler and cost model, run on a virtual clock (deterministic, no sleeping)."""

from __future__ import annotations

import itertools
import statistics
from typing import Any

TIMED = {"itl_ms": 10.0, "batch_ms_per_token": 0.5, "ttft_ms": 20.0, "prefill_ms_per_token": 0.1}


def finish_times(jobs: list[Any]) -> list[float]:
    return [seq.t_last - job.t_arrival for job in jobs for seq in job.seqs]


def test_latency_grows_with_batch_size(harness: Any) -> None:
    alone = harness(**TIMED)
    job = alone.submit(max_tokens=50)
    alone.engine.run_virtual()
    busy = harness(**TIMED)
    jobs = [busy.submit(max_tokens=50) for _ in range(64)]
    busy.engine.run_virtual()
    single = finish_times([job])[0]
    loaded = statistics.mean(finish_times(jobs))
    # 64 sequences add 63 * 0.5 ms to every 10 ms decode step.
    assert loaded > 3 * single
    assert all(seq.emitted == 50 for j in jobs for seq in j.seqs)


def test_requests_beyond_max_num_seqs_wait_in_fifo_order(harness: Any) -> None:
    h = harness(max_num_seqs=4, **TIMED)
    jobs = [h.submit(max_tokens=20) for _ in range(10)]
    step = h.engine.schedule(0.0)
    assert step is not None
    assert (h.engine.num_running, h.engine.num_waiting) == (4, 6)
    h.engine.complete(step, step.duration)
    h.engine.run_virtual(start=step.duration)
    first_tokens = [j.seqs[0].t_first for j in jobs]
    assert first_tokens == sorted(first_tokens)
    # The fifth request waits for a whole batch of four to finish.
    assert first_tokens[4] > jobs[0].seqs[0].t_last
    assert h.engine.metrics.queue_time.count == 10


def test_ttft_includes_prefill_cost_per_prompt_token(harness: Any) -> None:
    h = harness(**TIMED, enable_prefix_caching=False)
    short = h.submit("hi", max_tokens=1)
    h.engine.run_virtual()
    h2 = harness(**TIMED, enable_prefix_caching=False)
    long = h2.submit("word " * 2000, max_tokens=1)
    h2.engine.run_virtual()
    ttft_short = short.seqs[0].t_first - short.t_arrival
    ttft_long = long.seqs[0].t_first - long.t_arrival
    extra_tokens = len(long.req.prompts[0].ids) - len(short.req.prompts[0].ids)
    assert abs((ttft_long - ttft_short) - extra_tokens * 0.1 / 1000) < 1e-6
    assert abs(ttft_short - (20.0 + 0.1 * len(short.req.prompts[0].ids)) / 1000) < 1e-6


def test_chunked_prefill_spreads_long_prompts_over_steps(harness: Any) -> None:
    h = harness(**TIMED, max_num_batched_tokens=512, enable_prefix_caching=False)
    job = h.submit("word " * 2000, max_tokens=1)
    steps = 0
    now = 0.0
    while job.seqs[0].t_first is None:
        step = h.engine.schedule(now)
        assert step is not None
        assert sum(chunk for _, chunk in step.prefill) <= 512
        now += step.duration
        h.engine.complete(step, now)
        steps += 1
    assert steps == -(-len(job.req.prompts[0].ids) // 512)


def test_prefix_cache_hits_shorten_the_second_prefill(harness: Any) -> None:
    h = harness(**TIMED)
    prompt = "The same long system context. " * 100
    first = h.submit(prompt, max_tokens=1)
    end = h.engine.run_virtual()
    second = h.submit(prompt, max_tokens=1, at=end)
    h.engine.run_virtual(start=end)
    assert second.seqs[0].cached_tokens > 0.9 * len(second.req.prompts[0].ids)
    assert h.engine.metrics.prefix_hits == second.seqs[0].cached_tokens
    assert (second.seqs[0].t_first - second.t_arrival) < (first.seqs[0].t_first - first.t_arrival)


def test_speculative_decoding_emits_several_tokens_per_step(harness: Any) -> None:
    h = harness(**TIMED, spec_k=4, spec_alpha=0.8)
    job = h.submit(max_tokens=400)
    h.engine.run_virtual()
    m = h.engine.metrics
    assert job.seqs[0].emitted == 400
    assert m.spec_draft_tokens == 4 * m.spec_drafts
    assert m.spec_accepted == sum(m.spec_accepted_per_pos)
    per_pos = m.spec_accepted_per_pos
    assert all(a >= b for a, b in itertools.pairwise(per_pos))
    # Expected tokens per step with k=4, alpha=0.8: (1 - 0.8**5) / 0.2 = 3.36.
    tokens_per_step = (m.spec_accepted + m.spec_drafts) / m.spec_drafts
    assert 2.9 < tokens_per_step < 3.8


def _decode_time(harness: Any, batch: int, **spec: Any) -> float:
    h = harness(**TIMED, max_num_seqs=512, **spec)
    jobs = [h.submit(max_tokens=120) for _ in range(batch)]
    h.engine.run_virtual()
    return statistics.mean(seq.t_last - seq.t_first for j in jobs for seq in j.seqs)


def test_speculation_helps_at_low_batch_and_hurts_at_high_batch(harness: Any) -> None:
    spec = {"spec_k": 4, "spec_alpha": 0.7, "spec_draft_ms": 1.0}
    speedup_1 = _decode_time(harness, 1) / _decode_time(harness, 1, **spec)
    speedup_256 = _decode_time(harness, 256) / _decode_time(harness, 256, **spec)
    assert speedup_1 > 2.0
    assert speedup_256 < 0.8


def test_kv_cache_pressure_preempts_and_recomputes(harness: Any) -> None:
    h = harness(**TIMED, num_gpu_blocks=64, max_model_len=512, enable_prefix_caching=False)
    jobs = [h.submit("word " * 100, max_tokens=200) for _ in range(6)]
    h.engine.run_virtual()
    assert h.engine.metrics.preemptions > 0
    assert all(seq.emitted == 200 and seq.done for j in jobs for seq in j.seqs)
    assert h.engine.used_blocks == 0


def test_abort_removes_sequences_from_the_batch(harness: Any) -> None:
    h = harness(**TIMED, max_num_seqs=2)
    jobs = [h.submit(max_tokens=100) for _ in range(4)]
    step = h.engine.schedule(0.0)
    assert step is not None
    h.engine.complete(step, step.duration)
    h.engine.abort(jobs[0])
    h.engine.abort(jobs[3])
    assert jobs[0].aborted and jobs[0].finished
    assert h.engine.num_running == 1 and h.engine.num_waiting == 1
    h.engine.run_virtual(start=step.duration)
    assert jobs[1].seqs[0].emitted == 100 and jobs[2].seqs[0].emitted == 100
    assert h.engine.metrics.success["abort"] == 2


def test_seeded_plans_are_deterministic(harness: Any) -> None:
    h = harness()
    a = h.submit("x", max_tokens=64, seed=5, ignore_eos=False)
    b = h.submit("x", max_tokens=64, seed=5, ignore_eos=False)
    c = h.submit("x", max_tokens=64, seed=6, ignore_eos=False)
    text = [j.seqs[0].plan.content(j.seqs[0].plan.n_tokens) for j in (a, b, c)]
    assert text[0] == text[1] != text[2]
