"""Configuration: YAML files parsed into pydantic models, in one place.

`${VAR}` / `${VAR:-default}` in string values are replaced from the environment, and
`FRUGATE_<FIELD>` (nested with `__`, e.g. `FRUGATE_UPSTREAM__RETRIES=3`) overrides a field.
Nothing else in frugate reads `os.environ`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

ENV_PREFIX = "FRUGATE_"
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ConfigError(Exception):
    """A configuration file that cannot be used; the message names the file and the field."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Price(_Model):
    """USD per 1M tokens."""

    input: Decimal = Field(ge=0)
    output: Decimal = Field(ge=0)
    cached_input: Decimal | None = Field(default=None, ge=0)


class Timeouts(_Model):
    connect_s: float = Field(default=2.0, gt=0)
    first_byte_s: float = Field(default=60.0, gt=0)
    total_s: float = Field(default=600.0, gt=0)


class Replica(_Model):
    url: str
    speculative: bool = False

    @model_validator(mode="before")
    @classmethod
    def _from_str(cls, v: Any) -> Any:
        return {"url": v} if isinstance(v, str) else v


class Pool(_Model):
    name: str = Field(pattern=r"^[A-Za-z0-9_.:-]+$")
    model: str
    replicas: list[Replica] = Field(min_length=1)
    kind: Literal["chat", "embedding"] = "chat"
    max_context: int = Field(default=8192, gt=0)
    price: Price = Price(input=Decimal(0), output=Decimal(0))
    api_key: SecretStr | None = None
    aliases: list[str] = []
    timeouts: Timeouts = Timeouts()
    max_connections: int = Field(default=512, gt=0)
    # Speculation-aware balancing: prefer speculating replicas while their batch is small.
    spec_max_running: int = Field(default=8, ge=0)


class SimWorker(_Model):
    """A simulated vLLM worker that `frugate serve` starts as a subprocess."""

    port: int = Field(gt=0, lt=65536)
    model: str
    profile: str = "realistic-small"
    args: list[str] = []


class Upstream(_Model):
    health_interval_s: float = Field(default=5.0, gt=0)
    scrape_interval_s: float = Field(default=1.0, gt=0)
    retries: int = Field(default=2, ge=0, le=10)
    retry_backoff_ms: float = Field(default=20.0, ge=0)
    eject_after_failures: int = Field(default=3, ge=1)
    eject_base_s: float = Field(default=1.0, gt=0)
    eject_max_s: float = Field(default=30.0, gt=0)
    # Warn when a pool's speculative-decoding acceptance rate falls below this.
    spec_collapse_rate: float = Field(default=0.3, ge=0, le=1)


class Limits(_Model):
    max_body_bytes: int = Field(default=8 * 1024 * 1024, gt=0)
    max_messages: int = Field(default=2048, gt=0)
    max_tokens_ceiling: int = Field(default=32768, gt=0)
    # Overload: at most max_in_flight requests run; one tenant holds at most tenant_share of
    # them; the rest wait (fairly, round-robin by tenant) in a queue of max_queue for up to
    # queue_timeout_s; beyond that, 503 + Retry-After. Buffered bodies are capped too.
    max_in_flight: int = Field(default=2048, gt=0)
    max_queue: int = Field(default=1024, ge=0)
    queue_timeout_s: float = Field(default=10.0, gt=0)
    tenant_share: float = Field(default=0.5, gt=0, le=1)
    max_buffered_bytes: int = Field(default=512 * 1024 * 1024, gt=0)


class Admission(_Model):
    # With Redis down: refuse requests (closed, 503) or admit them uncounted (open).
    fail_open: bool = False
    # A hold not settled within this time is released (a crashed replica cannot pin budgets).
    hold_ttl_s: float = Field(default=900.0, gt=0)


class Ledger(_Model):
    flush_ms: int = Field(default=250, gt=0)
    flush_rows: int = Field(default=500, gt=0)
    # Ledger events left pending this long by a dead replica are taken over by another.
    claim_idle_ms: int = Field(default=30_000, gt=0)


class Rag(_Model):
    enabled: bool = True
    # Default <data_dir>/rag.
    data_dir: Path | None = None
    # Budget for the grounding sources added to a prompt (tokens), and the default top_k.
    max_grounding_tokens: int = Field(default=2000, gt=0)
    top_k: int = Field(default=5, ge=1, le=50)
    position: Literal["before_last_user", "system"] = "before_last_user"


class Cache(_Model):
    """The response cache's defaults; a team's or key's `settings.cache` overrides them."""

    enabled: bool = True
    semantic: bool = True
    max_temperature: float = Field(default=1.0, ge=0, le=2)
    max_messages: int = Field(default=16, gt=0)
    allow_tools: bool = False
    per_team: bool = False
    ttl_s: int = Field(default=86_400, gt=0)
    max_ttl_s: int = Field(default=7 * 86_400, gt=0)
    # The verifier's false-hit budget for semantic hits.
    delta: float = Field(default=0.01, gt=0, lt=1)
    max_entries: int = Field(default=100_000, gt=0)
    # What a hit is billed (USD per 1M tokens); free by default.
    price: Price = Price(input=Decimal(0), output=Decimal(0))


class Embeddings(_Model):
    """Where `/v1/embeddings` goes: an embedding pool by name, else the bundled MiniLM."""

    pool: str | None = None
    local_model_name: str = "all-MiniLM-L6-v2"


class RoutingPolicy(_Model):
    """A model alias such as `auto` that lets the router choose between two pools."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.:-]+$")
    small: str
    large: str
    large_share: float | None = Field(default=None, ge=0, le=1)
    quality: float | None = Field(default=None, gt=0, le=1)
    # May an unhealthy/saturated large pool fall back to small?
    allow_degrade: bool = True
    # Prefer small once a team has used this fraction of its budget (None: never).
    prefer_small_above_budget: float | None = Field(default=None, gt=0, le=1)
    # Hold `large_share` on live traffic: the threshold follows the last `track_window` scores
    # (traffic unlike the calibration data otherwise gets a very different share).
    track_share: bool = False
    track_window: int = Field(default=2000, ge=64, le=1_000_000)
    # Cascade: a chat request the score sends to small is answered by small (whole, with
    # logprobs); if the answer's mean token logprob is below this, large answers instead (and
    # the request pays both calls). None: no cascade.
    cascade_min_logprob: float | None = Field(default=None, le=0)

    @model_validator(mode="after")
    def _one_knob(self) -> RoutingPolicy:
        if (self.large_share is None) == (self.quality is None):
            raise ValueError("set exactly one of large_share or quality")
        if self.track_share and self.large_share is None:
            raise ValueError("track_share needs large_share (a quality target needs labels)")
        return self


class Routing(_Model):
    policies: list[RoutingPolicy] = []
    # The pool that prices the all-large baseline in savings reports (default: priciest chat pool).
    baseline_pool: str | None = None


class Logging(_Model):
    level: str = "INFO"
    json_format: bool = Field(default=True, alias="json")

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Tracing(_Model):
    """OpenTelemetry traces of model calls (needs the `otel` extra); off by default."""

    enabled: bool = False
    # OTLP collector, e.g. http://otel-collector:4318 (http/protobuf) or :4317 (grpc). None: the
    # exporter's default, or the OTEL_EXPORTER_OTLP_* variables it reads itself.
    endpoint: str | None = None
    protocol: Literal["http/protobuf", "grpc"] = "http/protobuf"
    headers: dict[str, str] = {}
    service_name: str = "frugate"
    # Share of requests traced (a client's sampled traceparent is always followed).
    sample_ratio: float = Field(default=1.0, ge=0, le=1)


class Settings(_Model):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, gt=0, lt=65536)
    workers: int = Field(default=1, ge=1)
    data_dir: Path = Path("./data")
    database_url: str | None = None
    redis_url: str | None = None
    # Prefix of every Redis key and channel, so deployments can share one Redis.
    redis_prefix: str = Field(default="frugate", pattern=r"^[A-Za-z0-9_.-]+$")
    master_key: SecretStr | None = None
    # Signs soft-limit webhooks (X-Frugate-Signature: sha256=HMAC(secret, body)).
    webhook_secret: SecretStr | None = None
    pools: list[Pool] = Field(min_length=1)
    simulated_workers: list[SimWorker] = []
    upstream: Upstream = Upstream()
    limits: Limits = Limits()
    admission: Admission = Admission()
    ledger: Ledger = Ledger()
    embeddings: Embeddings = Embeddings()
    rag: Rag = Rag()
    cache: Cache = Cache()
    routing: Routing = Routing()
    logging: Logging = Logging()
    tracing: Tracing = Tracing()
    cors_origins: list[str] = []
    # Embedded default: create a default tenant/team and a demo key on first start.
    demo_key: bool = False

    @field_validator("database_url", "redis_url")
    @classmethod
    def _empty_is_unset(cls, v: str | None) -> str | None:
        return v or None  # `${REDIS_URL:-}` with the variable unset: no Redis

    @model_validator(mode="after")
    def _check_names(self) -> Settings:
        seen: dict[str, str] = {}
        for pool in self.pools:
            for name in (pool.name, *pool.aliases):
                if name in seen:
                    raise ValueError(
                        f"model name {name!r} is used by pools {seen[name]!r} and {pool.name!r}")
                seen[name] = pool.name
        pools = {p.name for p in self.pools}
        if self.embeddings.pool is not None and self.embeddings.pool not in pools:
            raise ValueError(f"embeddings.pool {self.embeddings.pool!r} is not a configured pool")
        for pol in self.routing.policies:
            if pol.name in seen:
                raise ValueError(f"routing policy {pol.name!r} clashes with a pool or alias name")
            for side in (pol.small, pol.large):
                if side not in pools:
                    raise ValueError(f"routing policy {pol.name!r}: unknown pool {side!r}")
        if self.routing.baseline_pool is not None and self.routing.baseline_pool not in pools:
            raise ValueError(f"routing.baseline_pool {self.routing.baseline_pool!r} is not a pool")
        if self.workers > 1 and self.redis_url is None:
            raise ValueError("workers > 1 needs redis_url: budgets and rate limits must be shared")
        return self

    @property
    def sqlalchemy_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.data_dir / 'frugate.db'}"


DEFAULT_CONFIG = "configs/frugate.yaml"


def config_path(explicit: str | Path | None = None) -> Path:
    """The config file to use: explicit, else $FRUGATE_CONFIG, else the embedded default."""
    return Path(explicit or os.environ.get(ENV_PREFIX + "CONFIG") or DEFAULT_CONFIG)


def load_settings(path: str | Path, env: Mapping[str, str] | None = None) -> Settings:
    """Read, interpolate and validate a config file. Raises ConfigError naming file and field."""
    env = os.environ if env is None else env
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    try:
        data = _interpolate(raw, env, ())
    except KeyError as exc:
        raise ConfigError(f"{path}: {exc.args[0]}") from exc
    _apply_env_overrides(data, env)
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{path}: " + _describe(exc)) from exc


def _describe(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        lines.append(f"{where}: {err['msg']}")
    return "; ".join(lines)


def _interpolate(value: Any, env: Mapping[str, str], loc: tuple[str, ...]) -> Any:
    if isinstance(value, dict):
        return {k: _interpolate(v, env, (*loc, str(k))) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, env, (*loc, str(i))) for i, v in enumerate(value)]
    if isinstance(value, str) and "${" in value:

        def sub(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            raise KeyError(f"{'.'.join(loc)}: environment variable {name} is not set")

        out = _ENV_REF.sub(sub, value)
        # A value that was only a reference to an unset-with-empty-default becomes null.
        return None if out == "" and _ENV_REF.fullmatch(value) else out
    return value


def _apply_env_overrides(data: dict[str, Any], env: Mapping[str, str]) -> None:
    for name, raw in env.items():
        if not name.startswith(ENV_PREFIX) or name == ENV_PREFIX + "CONFIG":
            continue
        path = name[len(ENV_PREFIX) :].lower().split("__")
        if path[0] not in Settings.model_fields:
            continue
        node = data
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                break
        else:
            # Plain strings stay strings (pydantic converts "3" or "true" where a field needs it);
            # "[...]" and "{...}" are read as YAML so lists and mappings can be overridden too.
            node[path[-1]] = yaml.safe_load(raw) if raw[:1] in ("[", "{") else (raw or None)
