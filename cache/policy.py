"""Eligibility: which requests may read from and write to the cache.

The policy is configured per key/team by the gateway; per-request controls come
from `extra_body={"frugate": {"cache": ...}}` or the `x-frugate-cache-control` header.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cache.keys import Scope

__all__ = ["CacheControls", "CachePolicy", "Eligibility", "eligibility", "parse_controls"]

CONTROL_HEADER = "x-frugate-cache-control"


@dataclass(frozen=True, slots=True)
class CachePolicy:
    """Cache settings for one key or team.

    `delta` is the maximum false-hit rate the semantic verifier is calibrated to.
    A request without `temperature` counts as temperature 1.0 (the OpenAI default).
    """

    enabled: bool = True
    semantic: bool = True
    max_temperature: float = 1.0
    max_messages: int = 16
    allow_tools: bool = False
    per_team: bool = False
    ttl_s: int = 86_400
    max_ttl_s: int = 7 * 86_400
    delta: float = 0.01

    def scope(self, tenant: str, team: str | None) -> Scope:
        return Scope(tenant, team if self.per_team else None)


@dataclass(frozen=True, slots=True)
class CacheControls:
    """Per-request controls. `force` opts in despite a high temperature."""

    no_cache: bool = False
    no_store: bool = False
    ttl_s: int | None = None
    force: bool = False
    semantic: bool | None = None


@dataclass(frozen=True, slots=True)
class Eligibility:
    """What the cache may do for one request; `reason` says why something is off."""

    read: bool
    write: bool
    semantic: bool
    ttl_s: int
    reason: str | None = None

    @property
    def bypass(self) -> bool:
        return not self.read and not self.write


def _apply_token(token: str, out: dict[str, Any]) -> None:
    token = token.strip().lower()
    if not token:
        return
    name, _, value = token.partition("=")
    name = name.strip().replace("_", "-")
    if name in ("no-cache", "no-store", "force"):
        out[name.replace("-", "_")] = True
    elif name in ("off", "bypass"):
        out["no_cache"] = out["no_store"] = True
    elif name in ("ttl", "max-age"):
        out["ttl_s"] = int(value)
    elif name == "exact-only":
        out["semantic"] = False
    else:
        raise ValueError(f"unknown cache control {token!r}")


def parse_controls(
    request: Mapping[str, Any], headers: Mapping[str, str] | None = None
) -> CacheControls:
    """Controls from `request["frugate"]["cache"]` and the `x-frugate-cache-control` header.

    Accepted: "no-cache", "no-store", "off", "force", "exact-only", "ttl=60" (strings,
    comma-separated strings, lists of them) or a dict like
    `{"no_cache": true, "no_store": true, "ttl": 60, "force": true, "semantic": false}`.
    Raises ValueError on anything else, so typos are not silently ignored.
    """
    out: dict[str, Any] = {}
    extra = request.get("frugate")
    value = extra.get("cache") if isinstance(extra, Mapping) else None
    if isinstance(value, str):
        for token in value.split(","):
            _apply_token(token, out)
    elif isinstance(value, list):
        for token in value:
            _apply_token(str(token), out)
    elif isinstance(value, Mapping):
        for key, val in value.items():
            name = str(key).replace("-", "_")
            if name in ("ttl", "ttl_s", "max_age"):
                out["ttl_s"] = int(val)
            elif name in ("no_cache", "no_store", "force", "semantic"):
                out[name] = bool(val)
            else:
                raise ValueError(f"unknown cache control {key!r}")
    elif value is not None and not isinstance(value, bool):
        raise ValueError("frugate.cache must be a string, a list or an object")
    elif value is False:
        out["no_cache"] = out["no_store"] = True
    if headers:
        header = next((v for k, v in headers.items() if k.lower() == CONTROL_HEADER), None)
        if header:
            for token in header.split(","):
                _apply_token(token, out)
    if out.get("ttl_s") is not None and out["ttl_s"] <= 0:
        raise ValueError("cache ttl must be positive")
    return CacheControls(**out)


def _ineligible(
    request: Mapping[str, Any], policy: CachePolicy, controls: CacheControls
) -> str | None:
    messages = request.get("messages")
    if not policy.enabled:
        return "disabled"
    if not isinstance(messages, list) or not messages:
        return "no-messages"
    if not any(isinstance(m, Mapping) and m.get("role") == "user" for m in messages):
        return "no-user-message"
    if len(messages) > policy.max_messages:
        return "too-many-messages"
    n = request.get("n")
    if n is not None and int(n) > 1:
        return "n>1"
    if not policy.allow_tools and (request.get("tools") or request.get("functions")):
        return "tools"
    temperature = request.get("temperature")
    temperature = 1.0 if temperature is None else float(temperature)
    if temperature > policy.max_temperature and not controls.force:
        return "temperature"
    return None


def eligibility(
    request: Mapping[str, Any], policy: CachePolicy, controls: CacheControls | None = None
) -> Eligibility:
    """Whether this request may read (lookup) and write (store) the cache."""
    controls = controls or CacheControls()
    ttl = min(controls.ttl_s or policy.ttl_s, policy.max_ttl_s)
    semantic = (
        policy.semantic if controls.semantic is None else controls.semantic and (policy.semantic)
    )
    reason = _ineligible(request, policy, controls)
    if reason is not None:
        return Eligibility(read=False, write=False, semantic=False, ttl_s=ttl, reason=reason)
    if controls.no_cache and controls.no_store:
        reason = "no-cache,no-store"
    elif controls.no_cache:
        reason = "no-cache"
    elif controls.no_store:
        reason = "no-store"
    return Eligibility(
        read=not controls.no_cache,
        write=not controls.no_store,
        semantic=semantic,
        ttl_s=ttl,
        reason=reason,
    )
