from __future__ import annotations

import pytest

from cache import CacheControls, CachePolicy, eligibility, parse_controls
from tests.cache.conftest import chat


def test_default_policy_reads_and_writes() -> None:
    e = eligibility(chat("hi", temperature=0), CachePolicy())
    assert e.read and e.write and e.semantic and e.reason is None
    assert e.ttl_s == CachePolicy().ttl_s


@pytest.mark.parametrize(
    ("request_", "reason"),
    [
        (chat("hi", n=2), "n>1"),
        (chat("hi", tools=[{"type": "function", "function": {"name": "f"}}]), "tools"),
        (chat("hi", temperature=1.5), "temperature"),
        ({"model": "m", "messages": [{"role": "system", "content": "x"}]}, "no-user-message"),
        ({"model": "m", "messages": []}, "no-messages"),
    ],
)
def test_ineligible_requests_bypass(request_: dict[str, object], reason: str) -> None:
    e = eligibility(request_, CachePolicy())
    assert e.bypass and e.reason == reason


def test_max_messages_and_temperature_limits() -> None:
    policy = CachePolicy(max_temperature=0.2, max_messages=2)
    many = {"model": "m", "messages": [{"role": "user", "content": str(i)} for i in range(3)]}
    assert eligibility(many, policy).reason == "too-many-messages"
    assert eligibility(chat("hi"), policy).reason == "temperature"  # absent means 1.0
    assert not eligibility(chat("hi", temperature=0.2), policy).bypass
    forced = eligibility(chat("hi", temperature=0.9), policy, CacheControls(force=True))
    assert forced.read and forced.write


def test_allow_tools_policy() -> None:
    req = chat("hi", tools=[{"type": "function", "function": {"name": "f"}}])
    assert not eligibility(req, CachePolicy(allow_tools=True)).bypass


def test_controls_from_extra_body_and_header() -> None:
    c = parse_controls(chat("hi", frugate={"cache": "no-store"}))
    assert c.no_store and not c.no_cache
    c = parse_controls(chat("hi", frugate={"cache": {"ttl": 60, "no_cache": True}}))
    assert c.ttl_s == 60 and c.no_cache
    c = parse_controls(chat("hi"), {"X-Frugate-Cache-Control": "no-cache, ttl=30"})
    assert c.no_cache and c.ttl_s == 30
    c = parse_controls(chat("hi", frugate={"cache": ["no-cache", "no-store"]}))
    assert c.no_cache and c.no_store
    with pytest.raises(ValueError):
        parse_controls(chat("hi", frugate={"cache": "nocache"}))
    with pytest.raises(ValueError):
        parse_controls(chat("hi", frugate={"cache": {"ttl": -1}}))


def test_no_cache_and_no_store_split_read_and_write() -> None:
    req = chat("hi", temperature=0)
    e = eligibility(req, CachePolicy(), CacheControls(no_cache=True))
    assert not e.read and e.write and e.reason == "no-cache"
    e = eligibility(req, CachePolicy(), CacheControls(no_store=True))
    assert e.read and not e.write and e.reason == "no-store"
    e = eligibility(req, CachePolicy(), CacheControls(no_cache=True, no_store=True))
    assert e.bypass


def test_ttl_control_is_capped_by_policy() -> None:
    policy = CachePolicy(ttl_s=100, max_ttl_s=1000)
    assert eligibility(chat("hi"), policy, CacheControls(ttl_s=50)).ttl_s == 50
    assert eligibility(chat("hi"), policy, CacheControls(ttl_s=10**6)).ttl_s == 1000


def test_per_team_scope() -> None:
    assert CachePolicy().scope("acme", "a").team is None
    assert CachePolicy(per_team=True).scope("acme", "a").team == "a"
