"""Shared pieces of the gateway benchmarks: a fixed-response upstream, process launching and
pinning, wrk runs (post.lua), the measurement loop, py-spy summaries and reports.

Used by benchmarks/gateway_overhead.py and benchmarks/litellm_compare.py; not a frugate package.
"""

from __future__ import annotations

from benchmarks.lib.matrix import Cell, Plan, measure, write_bodies
from benchmarks.lib.report import Row, summarize
from benchmarks.lib.targets import Target, Unavailable
from benchmarks.lib.wrk import Run

__all__ = ["Cell", "Plan", "Row", "Run", "Target", "Unavailable", "measure", "summarize",
           "write_bodies"]
