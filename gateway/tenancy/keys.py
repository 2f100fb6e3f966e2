"""Virtual keys: `fk-` + 40 random URL-safe characters; only the sha256 is ever stored."""

from __future__ import annotations

import hashlib
import secrets

PREFIX = "fk-"


def new_key() -> str:
    return PREFIX + secrets.token_urlsafe(30)  # 40 characters, 240 bits


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def display_prefix(key: str) -> str:
    """What the admin API shows instead of the key: enough to recognise it, useless to use it."""
    return key[:7] + "..."


def new_id(kind: str) -> str:
    return f"{kind}_{secrets.token_hex(8)}"
