"""Retrieval evaluation: nDCG@k and recall@k over JSONL queries and qrels (trec_eval's definitions).

Formats (kept exactly, they are the evaluation contract):
  queries  {"id", "text"}
  qrels    {"query_id", "doc_id", "relevance"}   relevance > 0 means relevant (graded gain)
  corpus   {"id", "title", "text"}
  run      {"query_id", "doc_ids": [...]}        ranked, one entry per document
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag.records import SearchMode

if TYPE_CHECKING:
    from embedder.base import Embedder
    from rag.collections import Collection

Qrels = dict[str, dict[str, int]]
Run = dict[str, list[str]]


@dataclass(frozen=True)
class Query:
    id: str
    text: str


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}:{number}: invalid JSON ({exc.msg})") from exc


def load_queries(path: Path) -> list[Query]:
    return [Query(str(row["id"]), str(row["text"])) for row in read_jsonl(path)]


def load_qrels(path: Path) -> Qrels:
    qrels: Qrels = {}
    for row in read_jsonl(path):
        qrels.setdefault(str(row["query_id"]), {})[str(row["doc_id"])] = int(row["relevance"])
    return qrels


def ndcg_at_k(ranked: Sequence[str], judgments: Mapping[str, int], k: int = 10) -> float:
    """Linear gains (the relevance grade), log2 discount, ideal from all judged documents."""
    dcg = sum(
        max(judgments.get(doc, 0), 0) / math.log2(rank + 2) for rank, doc in enumerate(ranked[:k])
    )
    ideal = sorted((g for g in judgments.values() if g > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(rank + 2) for rank, g in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def recall_at_k(ranked: Sequence[str], judgments: Mapping[str, int], k: int = 100) -> float:
    relevant = {doc for doc, g in judgments.items() if g > 0}
    if not relevant:
        return 0.0
    return len(relevant.intersection(ranked[:k])) / len(relevant)


def evaluate_run(run: Run, qrels: Qrels, ndcg_k: int = 10, recall_k: int = 100) -> dict[str, float]:
    """Means over the queries that have at least one relevant judgment (as trec_eval does)."""
    judged = [q for q, j in qrels.items() if any(g > 0 for g in j.values())]
    if not judged:
        return {f"ndcg@{ndcg_k}": 0.0, f"recall@{recall_k}": 0.0, "queries": 0}
    ndcg = sum(ndcg_at_k(run.get(q, []), qrels[q], ndcg_k) for q in judged) / len(judged)
    recall = sum(recall_at_k(run.get(q, []), qrels[q], recall_k) for q in judged) / len(judged)
    return {f"ndcg@{ndcg_k}": ndcg, f"recall@{recall_k}": recall, "queries": len(judged)}


def evaluate_collection(
    collection: Collection,
    embedder: Embedder,
    queries: Sequence[Query],
    qrels: Qrels,
    modes: Sequence[SearchMode] = ("dense", "bm25", "fused"),
    depth: int = 100,
) -> dict[str, dict[str, float]]:
    """nDCG@10 and recall@`depth` of each retrieval mode over `queries` (embedded once)."""
    vectors = embedder.embed([q.text for q in queries])
    results: dict[str, dict[str, float]] = {}
    for mode in modes:
        run: Run = {
            q.id: [doc for doc, _ in collection.search_documents(q.text, vectors[i], depth, mode)]
            for i, q in enumerate(queries)
        }
        results[mode] = evaluate_run(run, qrels, recall_k=depth)
    return results
