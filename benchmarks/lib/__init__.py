"""Shared pieces of the gateway benchmarks (not a frugate package; nothing imports it but them).

    upstream   a fixed-response OpenAI upstream, raw asyncio (runnable with -m)
    procs      child processes with logs, CPU pinning
    targets    start the upstream, frugate (key + budgets) and LiteLLM; CPU-time probes
    wrk        run wrk with post.lua and read its JSON line
    matrix     the measurement loop (cells x targets x rounds)
    report     paired summaries, tables, JSON (-m with a saved run: print its tables)
    pyspy      py-spy record and a top-N summary
    floor      what uvicorn and HTTP clients alone cost (runnable with -m)
    cli        options and plumbing shared by the two scripts

Modules are imported by name (`from benchmarks.lib import wrk`); this file imports nothing so
that `python -m benchmarks.lib.<module>` runs cleanly.
"""
