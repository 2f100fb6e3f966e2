"""The embedded default's first run: a default tenant, team and a demo key in the data dir."""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.storage.models import ApiKey
from gateway.tenancy import admin
from gateway.tenancy.keys import hash_key

KEY_FILE = "demo-key"


async def ensure_demo_key(sessions: async_sessionmaker[AsyncSession], data_dir: Path) -> str:
    """Return a working demo key, creating tenant/team/key on first use.

    The plaintext is kept (mode 0600) in the data dir so later starts can print the snippet
    again; the database still holds only its hash.
    """
    path = data_dir / KEY_FILE
    async with sessions() as s, s.begin():
        if path.exists():
            key = path.read_text().strip()
            row = (await s.execute(ApiKey.__table__.select().where(
                ApiKey.key_hash == hash_key(key)))).first()
            if row is not None and row.revoked_at is None:
                return key
        team = await admin.find_team(s, "default", "default")
        if team is None:
            tenant = await admin.create_tenant(s, "default")
            team = await admin.create_team(s, tenant.id, "default")
        new = await admin.create_key(s, team.id, name="demo")
    _write_private(path, new.plaintext + "\n")
    return new.plaintext


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
