"""Model names clients may ask for: pools, their aliases, and routing policies."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.config import RoutingPolicy
from gateway.errors import NotFound, PermissionDenied
from gateway.tenancy.directory import Principal
from gateway.upstream.pool import Pool


@dataclass(frozen=True, slots=True)
class Target:
    requested: str
    pool: Pool | None = None
    policy: RoutingPolicy | None = None

    def candidates(self, catalog: Catalog) -> list[Pool]:
        if self.pool is not None:
            return [self.pool]
        assert self.policy is not None
        return [catalog.pools[self.policy.small], catalog.pools[self.policy.large]]


class Catalog:
    def __init__(self, pools: list[Pool], policies: list[RoutingPolicy]) -> None:
        self.pools = {p.name: p for p in pools}
        self.policies = {p.name: p for p in policies}
        self._names: dict[str, Pool] = {}
        for p in pools:
            self._names[p.name] = p
            for alias in p.config.aliases:
                self._names[alias] = p

    def resolve(self, model: str, principal: Principal | None, kind: str = "chat") -> Target:
        pool = self._names.get(model)
        policy = self.policies.get(model) if pool is None else None
        if (pool is None and policy is None) or (pool is not None and pool.config.kind != kind):
            raise NotFound(f"The model '{model}' does not exist or you do not have access to it.",
                           param="model", code="model_not_found")
        if principal is not None and not (
            principal.may_use(model) or (pool is not None and principal.may_use(pool.name))
        ):
            raise PermissionDenied(f"This key is not allowed to use the model '{model}'.",
                                   param="model", code="model_not_allowed")
        return Target(model, pool=pool, policy=policy)

    def listed(self) -> list[tuple[str, Pool | None]]:
        """Every public model id with the pool behind it (None for routing policies)."""
        out: list[tuple[str, Pool | None]] = list(self._names.items())
        out += [(name, None) for name in self.policies]
        return out
