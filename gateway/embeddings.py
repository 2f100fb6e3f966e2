"""/v1/embeddings: an embedding pool if one is configured, else the bundled MiniLM."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from gateway.accounting.record import Record
from gateway.errors import InvalidRequest, NotFound
from gateway.protocol import EmbeddingRequest, parse_body
from gateway.responses import JSONBytes
from gateway.tenancy import authenticate
from gateway.tokens import count_text
from gateway.upstream import open_request

if TYPE_CHECKING:
    from gateway.pipeline import Call
    from gateway.state import State

LOCAL_POOL = "local-embeddings"
# OpenAI's own bound: each input costs a forward pass, so an unbounded list is a cheap DoS.
MAX_INPUTS = 2048


class EmbeddingsServing:
    def __init__(self, state: State) -> None:
        self.s = state

    def model_names(self) -> list[str]:
        cfg = self.s.settings.embeddings
        if cfg.pool is not None:
            pool = self.s.pools[cfg.pool]
            return [pool.name, *pool.config.aliases]
        return [cfg.local_model_name]

    async def run(self, call: Call) -> JSONBytes:
        s = self.s
        principal = authenticate(s.directory, call.authorization)
        req, body = parse_body(call.body, EmbeddingRequest)
        if isinstance(req.input, list) and len(req.input) > MAX_INPUTS \
                and not all(isinstance(x, int) for x in req.input):
            raise InvalidRequest(f"Too many inputs: {len(req.input)} (at most {MAX_INPUTS}).",
                                 param="input")
        if req.model not in self.model_names():
            raise NotFound(f"The model '{req.model}' does not exist or is not an embedding model.",
                           param="model", code="model_not_found")
        if not principal.may_use(req.model):
            from gateway.errors import PermissionDenied

            raise PermissionDenied(f"This key is not allowed to use the model '{req.model}'.",
                                   param="model", code="model_not_allowed")
        texts = req.texts()
        tokens = sum(count_text(t) for t in texts) if texts is not None else \
            sum(len(x) if isinstance(x, list) else 1 for x in req.input)
        pool_name = s.settings.embeddings.pool or LOCAL_POOL
        record = Record(request_id=call.request_id, ts=datetime.now(UTC),
                        tenant_id=principal.tenant_id, team_id=principal.team_id,
                        key_id=principal.key_id, endpoint="embeddings",
                        requested_model=req.model, end_user=req.user, pool=pool_name)
        ticket = await s.meter.admit(principal, call.request_id,
                                     s.meter.estimate([pool_name], tokens, 0), tokens)
        try:
            if s.settings.embeddings.pool is not None:
                pool = s.pools[pool_name]
                body["model"] = pool.model
                opened = await open_request(pool, "/v1/embeddings", orjson.dumps(body),
                                            stream=False, settings=s.settings.upstream,
                                            request_id=call.request_id)
                raw = opened.body
                usage = (orjson.loads(raw).get("usage") or {}) if raw else {}
                record.prompt_tokens = int(usage.get("prompt_tokens") or tokens)
            else:
                raw = await self._local(req, texts)
                record.prompt_tokens = tokens
        except BaseException as exc:
            record.status, record.error_type = "error", getattr(exc, "type", "server_error")
            record.latency_ms = (time.perf_counter() - call.started) * 1000
            await s.meter.settle(ticket, record)
            raise
        record.served_model = req.model
        record.latency_ms = (time.perf_counter() - call.started) * 1000
        await s.meter.settle(ticket, record)
        return JSONBytes(raw, headers={"x-frugate-route": pool_name,
                                       "x-frugate-cost-usd": f"{record.cost_micros / 1e6:.6f}"})

    async def _local(self, req: EmbeddingRequest, texts: list[str] | None) -> bytes:
        if texts is None:
            raise InvalidRequest("The bundled embedding model takes text input, not token ids.",
                                 param="input")
        if not texts or any(t == "" for t in texts):
            raise InvalidRequest("'input' must not be empty.", param="input")
        dim = self.s.embedder.dim
        if req.dimensions is not None and req.dimensions != dim:
            raise InvalidRequest(f"This model produces {dim}-dimensional embeddings only.",
                                 param="dimensions")
        vecs = await self.s.embedder.embed_many(texts)
        data: list[dict[str, Any]] = []
        for i, v in enumerate(vecs):
            emb: Any = (base64.b64encode(np.asarray(v, dtype="<f4").tobytes()).decode()
                        if req.encoding_format == "base64" else v.tolist())
            data.append({"object": "embedding", "index": i, "embedding": emb})
        tokens = sum(count_text(t) for t in texts)
        return orjson.dumps({"object": "list", "data": data, "model": req.model,
                             "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})
