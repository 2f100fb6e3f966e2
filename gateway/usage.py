"""Token counts of a response: from its usage report, or, for responses that ended without
one (aborts, broken streams), counted with the upstream's own tokenizer (vLLM's /tokenize on
a replica of the same pool), falling back to tiktoken when no replica answers.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx

from gateway.tokens import count_text
from gateway.upstream.pool import Pool
from gateway.upstream.replica import Replica

log = logging.getLogger("frugate.usage")
TOKENIZE_TIMEOUT_S = 2.0


def usage_counts(usage: dict[str, Any]) -> tuple[int, int, int]:
    """(prompt, completion, cached prompt) tokens of an OpenAI `usage` object."""
    details = usage.get("prompt_tokens_details") or {}
    return (int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0),
            int(details.get("cached_tokens") or 0))


async def count_partial(pool: Pool, replica: Replica | None, body: dict[str, Any], text: str,
                        prompt_estimate: int) -> tuple[int, int]:
    """(prompt tokens, completion tokens) of a request that produced `text` so far."""
    prompt_req: dict[str, Any] = {"model": pool.model}
    if "messages" in body:
        prompt_req["messages"] = body["messages"]
    else:
        prompt_req["prompt"] = body.get("prompt", "")
    replicas = ([replica] if replica else []) + [r for r in pool.healthy_replicas()
                                                 if r is not replica]
    for replica in replicas:
        try:
            prompt = await _tokenize(pool.client, replica.url, prompt_req)
            completion = 0
            if text:
                completion = await _tokenize(pool.client, replica.url,
                                             {"model": pool.model, "prompt": text,
                                              "add_special_tokens": False})
            return prompt, completion
        except (httpx.HTTPError, KeyError, ValueError, TypeError) as exc:
            log.debug("tokenize on %s failed: %s", replica.url, exc)
    return prompt_estimate, count_text(text)


async def _tokenize(client: httpx.AsyncClient, url: str, payload: dict[str, Any]) -> int:
    resp = await client.post(url + "/tokenize", json=payload, timeout=TOKENIZE_TIMEOUT_S)
    resp.raise_for_status()
    return int(resp.json()["count"])
