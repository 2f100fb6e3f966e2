"""SQL storage: models and the async engine (SQLite embedded, PostgreSQL at scale)."""

from gateway.storage.db import connect, create_schema

__all__ = ["connect", "create_schema"]
