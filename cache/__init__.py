"""Exact + semantic response cache with a verified, bounded false-hit rate.

Request time (the gateway computes one embedding of the last user turn and passes it):

    policy = CachePolicy()
    controls = parse_controls(body, headers)
    elig = eligibility(body, policy, controls)
    keys = request_keys(body, policy.scope(tenant, team), model, rag_ids)
    hit = await cache.lookup(keys, vector, semantic=elig.semantic) if elig.read else None
    ...
    if elig.write: await cache.put(keys, response, vector, elig.ttl_s)
"""

from cache.entries import CacheEntry, Hit
from cache.index import SemanticIndex
from cache.keys import CacheKeys, Scope, request_keys
from cache.metrics import CacheMetrics
from cache.policy import CacheControls, CachePolicy, Eligibility, eligibility, parse_controls
from cache.response_cache import ResponseCache
from cache.sse import hit_response, sse_chunks
from cache.store import CacheStore
from cache.store_memory import MemoryStore
from cache.store_redis import RedisStore
from cache.verify import Verifier

__all__ = [
    "CacheControls",
    "CacheEntry",
    "CacheKeys",
    "CacheMetrics",
    "CachePolicy",
    "CacheStore",
    "Eligibility",
    "Hit",
    "MemoryStore",
    "RedisStore",
    "ResponseCache",
    "Scope",
    "SemanticIndex",
    "Verifier",
    "eligibility",
    "hit_response",
    "parse_controls",
    "request_keys",
    "sse_chunks",
]
