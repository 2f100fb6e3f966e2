"""Request ids: unique, OpenAI-like, and ordered by time so the ledger's key index appends."""

from __future__ import annotations

import re
import time

from gateway.routes.fastpath import new_request_id


def test_ids_are_unique_and_well_formed() -> None:
    ids = [new_request_id() for _ in range(20_000)]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"req_[0-9a-f]{24}", i) for i in ids)


def test_ids_sort_by_creation_time() -> None:
    earlier = [new_request_id() for _ in range(50)]
    time.sleep(0.003)
    later = [new_request_id() for _ in range(50)]
    assert max(earlier) < min(later)
    stamp = int(later[0][4:16], 16)  # the time part, in ms
    assert abs(stamp - time.time() * 1000) < 5_000
