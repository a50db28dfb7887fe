"""Numbered SQL migrations, applied idempotently and safely from many processes.

Migrations are the files ``migrations/NNNN_name.sql`` shipped in the package. Each
is applied once, in order, recorded in ``<schema>.schema_migrations``. The whole
run holds a transaction-scoped advisory lock keyed by the schema name, so two
processes migrating at once take turns: the second finds the work done.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any, Final, TypeAlias

if TYPE_CHECKING:
    import asyncpg
    import asyncpg.pool

    AnyConnection: TypeAlias = asyncpg.Connection[Any] | asyncpg.pool.PoolConnectionProxy[Any]

_FILE_NAME: Final = re.compile(r"(\d{4})_([a-z0-9_]+)\.sql")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def available_migrations() -> list[Migration]:
    found = []
    for entry in resources.files("eventcore.backends.postgres").joinpath("migrations").iterdir():
        match = _FILE_NAME.fullmatch(entry.name)
        if match is not None:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise RuntimeError(f"eventcore's migrations are not numbered 1..n: {versions}")
    return found


def render(sql: str, quoted_schema: str, channel: str) -> str:
    return sql.replace("__SCHEMA__", quoted_schema).replace("__CHANNEL__", channel)


async def migrate(conn: AnyConnection, schema: str, quoted_schema: str, channel: str) -> int:
    """Bring ``schema`` up to the newest migration; return how many were applied."""
    applied_now = 0
    async with conn.transaction():
        # Serialises concurrent migrations of this schema (released at commit).
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended('eventcore.migrate:' || $1, 0))",
            schema,
        )
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quoted_schema}")
        await conn.execute(
            f"CREATE TABLE IF NOT EXISTS {quoted_schema}.schema_migrations ("
            " version int PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {
            row[0]
            for row in await conn.fetch(f"SELECT version FROM {quoted_schema}.schema_migrations")
        }
        for migration in available_migrations():
            if migration.version in done:
                continue
            await conn.execute(render(migration.sql, quoted_schema, channel))
            await conn.execute(
                f"INSERT INTO {quoted_schema}.schema_migrations (version, name) VALUES ($1, $2)",
                migration.version,
                migration.name,
            )
            applied_now += 1
    return applied_now


async def schema_version(conn: AnyConnection, quoted_schema: str) -> int:
    """The newest migration applied to the schema, 0 if none (or no schema)."""
    exists = await conn.fetchval(
        "SELECT to_regclass($1) IS NOT NULL", f"{quoted_schema}.schema_migrations"
    )
    if not exists:
        return 0
    value = await conn.fetchval(f"SELECT max(version) FROM {quoted_schema}.schema_migrations")
    return int(value or 0)
