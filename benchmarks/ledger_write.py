"""CPU the ledger writer spends per row (SQLite, or Postgres with --db), in chunks as the
writer sends them.

    python -m benchmarks.ledger_write [--rows 5000] [--db postgresql+asyncpg://...]

Prints CPU ms per row (the process, all threads; and the event loop's thread alone) and wall
ms per chunk.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from gateway.accounting.ledger import CHUNK_ROWS, Record, write_records
from gateway.storage.db import connect, create_schema


def records(n: int) -> list[Record]:
    now = datetime.now(UTC)
    return [Record(request_id=uuid.uuid4().hex, ts=now, tenant_id="t1", team_id=f"team{i % 3}",
                   key_id=f"k{i % 7}", endpoint="chat", requested_model="small",
                   served_model="small", pool="small", prompt_tokens=20, completion_tokens=16,
                   cost_micros=12, baseline_micros=40, latency_ms=3.2) for i in range(n)]


async def main(rows: int, db: str | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = db or f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
        engine, sessions = connect(url)
        await create_schema(engine)
        await write_records(sessions, records(CHUNK_ROWS))  # warm-up: compile, connect
        recs = records(rows)
        cpu0, wall0, loop0 = time.process_time(), time.perf_counter(), time.thread_time()
        for i in range(0, rows, CHUNK_ROWS):
            await write_records(sessions, recs[i : i + CHUNK_ROWS])
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        loop = time.thread_time() - loop0
        chunks = -(-rows // CHUNK_ROWS)
        print(f"{rows} rows in {chunks} chunks of {CHUNK_ROWS}: "
              f"CPU {cpu * 1000 / rows:.3f} ms/row, "
              f"of which the event loop {loop * 1000 / rows:.3f} ms/row, "
              f"wall {wall * 1000 / chunks:.2f} ms/chunk")
        await engine.dispose()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=5000)
    ap.add_argument("--db", default=None, help="SQLAlchemy async URL (default: a temp SQLite file)")
    args = ap.parse_args()
    asyncio.run(main(args.rows, args.db))
