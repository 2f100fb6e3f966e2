"""Upstream vLLM pools: replica state, selection, health, scraping and the HTTP client."""

from gateway.upstream.client import Opened, open_request, upstream_error
from gateway.upstream.monitor import Monitor
from gateway.upstream.pool import Pool
from gateway.upstream.replica import Replica

__all__ = ["Monitor", "Opened", "Pool", "Replica", "open_request", "upstream_error"]
