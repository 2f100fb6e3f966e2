"""CPU the ledger writer spends per row (SQLite, or Postgres with --db), in batches as the
writer sends them: through the async engine, and (SQLite) with the direct writer.

    python -m benchmarks.ledger_write [--rows 5000] [--db postgresql+asyncpg://...]

Prints CPU ms per row (the process, all threads; and the event loop's thread alone) and wall
ms per row.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

from gateway.accounting.ledger_sql import CHUNK_ROWS, SqliteDirect, write_records
from gateway.accounting.record import Record
from gateway.storage.db import connect, create_schema


def records(n: int) -> list[Record]:
    now = datetime.now(UTC)
    return [Record(request_id=uuid.uuid4().hex, ts=now, tenant_id="t1", team_id=f"team{i % 3}",
                   key_id=f"k{i % 7}", endpoint="chat", requested_model="small",
                   served_model="small", pool="small", prompt_tokens=20, completion_tokens=16,
                   cost_micros=12, baseline_micros=40, latency_ms=3.2) for i in range(n)]


async def measure(name: str, rows: int, write: Callable[[list[Record]], Awaitable[int]]) -> None:
    await write(records(CHUNK_ROWS))  # warm-up: compile, connect
    recs = records(rows)
    cpu0, wall0, loop0 = time.process_time(), time.perf_counter(), time.thread_time()
    for i in range(0, rows, CHUNK_ROWS * 8):  # as BatchWriter flushes a backlog
        await write(recs[i : i + CHUNK_ROWS * 8])
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    loop = time.thread_time() - loop0
    print(f"{name:7s} {rows} rows: CPU {cpu * 1000 / rows:.3f} ms/row, "
          f"of which the event loop {loop * 1000 / rows:.3f} ms/row; "
          f"wall {wall * 1000 / rows:.3f} ms/row")


async def main(rows: int, db: str | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = db or f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
        engine, sessions = connect(url)
        await create_schema(engine)
        await measure("engine", rows, lambda recs: write_records(sessions, recs))
        direct = SqliteDirect.for_engine(engine)
        if direct is not None:
            await measure("direct", rows, direct.write)
            await direct.close()
        await engine.dispose()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=5000)
    ap.add_argument("--db", default=None, help="SQLAlchemy async URL (default: a temp SQLite file)")
    args = ap.parse_args()
    asyncio.run(main(args.rows, args.db))
