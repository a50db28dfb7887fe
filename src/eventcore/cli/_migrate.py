"""``eventcore migrate``: create or upgrade a store's schema."""

from __future__ import annotations

import click

from eventcore.cli._common import database_url_option, run


@click.command()
@database_url_option()
def migrate(database_url: str) -> None:
    """Create the store, or bring its schema up to date, and print its version.

    PostgreSQL: applies the pending migrations (safe while other processes run
    or migrate). SQLite: creates the file if needed and upgrades it in place.
    """
    run(_migrate(database_url))


async def _migrate(database_url: str) -> None:
    from eventcore.application import open_store
    from eventcore.cli._stores import describe

    postgres = database_url.startswith(("postgresql://", "postgres://"))
    # PostgreSQL is opened without migrating, to count what migrate() applies;
    # opening a SQLite file creates or upgrades its schema by itself.
    store = await open_store(database_url, create=not postgres)
    try:
        applied = await store.migrate() if postgres else None  # type: ignore[attr-defined]
        version = await _schema_version(store)
        done = "" if applied is None else f" ({applied} migrations applied now)"
        if version is None:
            click.echo(f"{describe(store)}: nothing to migrate")
        else:
            click.echo(f"{describe(store)}: schema version {version}{done}")
    finally:
        await store.close()


async def _schema_version(store: object) -> int | None:
    schema_version = getattr(store, "schema_version", None)
    if schema_version is not None:
        return int(await schema_version())
    if isinstance(getattr(store, "path", None), str):
        from eventcore.backends.sqlite._schema import SCHEMA_VERSION

        return SCHEMA_VERSION  # opening the file brought it to this version
    return None
