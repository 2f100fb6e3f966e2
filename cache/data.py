"""Labelled question pairs and the reproducible train/calib/dev split.

Pairs are `{"a", "b", "duplicate"}`. The split is by connected component of the
"appears in a pair with" graph over texts, so no question text is shared between
splits (QQP reuses questions across pairs; a per-pair split would leak them).
Each component goes to a split by sha256 of its smallest text: buckets 0-59 train,
60-79 calib, 80-99 dev.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Pair", "duplicate_clusters", "load_pairs", "normal_text", "read_jsonl",
           "same_question", "split_of", "split_pairs"]

SPLITS = {"train": range(0, 60), "calib": range(60, 80), "dev": range(80, 100)}


@dataclass(frozen=True, slots=True)
class Pair:
    a: str
    b: str
    duplicate: int


def read_jsonl(path: str | Path, fields: tuple[str, ...]) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line; each must be an object with `fields`.
    Anything else is a ValueError naming the file and the line."""
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path} line {n}: not JSON ({exc.msg})") from None
            if not isinstance(row, dict) or any(f not in row for f in fields):
                raise ValueError(f"{path} line {n}: expected an object with "
                                 + ", ".join(f'"{f}"' for f in fields))
            yield n, row


def load_pairs(path: str | Path) -> list[Pair]:
    pairs = []
    for n, row in read_jsonl(path, ("a", "b", "duplicate")):
        try:
            pairs.append(Pair(str(row["a"]), str(row["b"]), int(row["duplicate"])))
        except (ValueError, TypeError) as exc:
            raise ValueError(f'{path} line {n}: "duplicate" must be 0 or 1 ({exc})') from None
    return pairs


def _bucket(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big") % 100


def split_of(pairs: Iterable[Pair]) -> list[str]:
    """The split name of each pair (same order as `pairs`)."""
    pairs = list(pairs)
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for p in pairs:
        ra, rb = find(p.a), find(p.b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)  # root = smallest text of the component
    names = []
    for p in pairs:
        bucket = _bucket(find(p.a))
        names.append(next(name for name, rng in SPLITS.items() if bucket in rng))
    return names


def split_pairs(pairs: list[Pair]) -> dict[str, list[Pair]]:
    out: dict[str, list[Pair]] = {name: [] for name in SPLITS}
    for p, name in zip(pairs, split_of(pairs), strict=True):
        out[name].append(p)
    return out


def duplicate_clusters(pairs: Iterable[Pair]) -> dict[str, str]:
    """Text -> a representative of its duplicate cluster: texts linked by a chain of
    duplicate=1 labels are the same question."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for p in pairs:
        ra, rb = find(p.a), find(p.b)
        if p.duplicate and ra != rb:
            parent[ra] = rb
    return {t: find(t) for t in parent}


def normal_text(text: str) -> str:
    """Text up to whitespace: what the exact tier treats as the same request text."""
    return " ".join(text.split())


def same_question(query: str, cached: str, clusters: dict[str, str]) -> bool:
    """Whether returning `cached`'s answer for `query` is right according to the labels:
    the same text (up to whitespace) or linked by duplicate labels. Anything else —
    including pairs the labels say nothing about — counts as wrong."""
    if normal_text(query) == normal_text(cached):
        return True
    rq, rc = clusters.get(query), clusters.get(cached)
    return rq is not None and rq == rc
