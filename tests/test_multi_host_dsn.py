"""A multi-host DSN (``postgresql://user@host1:port1,host2:port2/db``), as used to
reach a failover cluster, on the shared test server; the failover itself is
tests/test_failover.py."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from eventcore.backends.postgres import PostgresConfig, PostgresEventStore
from eventcore.backends.postgres._errors import describe_target
from eventcore.demo.bank import Deposit, bank_codec
from eventcore.errors import StoreUnavailable
from eventcore.execute import execute
from tests import pg
from tests.patroni_cluster import free_ports

pytestmark = pytest.mark.postgres

PASSWORD = "s3cret-pw"


def multi_host(attrs: str, password: str = "") -> str:
    """A port where nothing listens, then the shared server: both on 127.0.0.1."""
    shared = urlsplit(pg.PG_URL)
    (nothing,) = free_ports(1)
    login = f"{shared.username}:{password}" if password else shared.username
    return (
        f"postgresql://{login}@127.0.0.1:{nothing},{shared.hostname}:{shared.port}"
        f"{shared.path}?target_session_attrs={attrs}"
    )


async def test_a_multi_host_dsn_reaches_the_host_that_accepts_writes(pg_schema: str) -> None:
    config = PostgresConfig.development(multi_host("read-write"), schema=pg_schema)
    async with await PostgresEventStore.open(config) as store:
        result = await execute(store, Deposit("acc", 5), codec=bank_codec)
        assert result.positions == (1,)


async def test_a_multi_host_dsn_with_no_writable_host_raises_store_unavailable(
    pg_schema: str,
) -> None:
    # The shared server is a primary: asking for a read-only host finds none.
    dsn = multi_host("read-only", password=PASSWORD)
    with pytest.raises(StoreUnavailable) as caught:
        await PostgresEventStore.open(PostgresConfig.development(dsn, schema=pg_schema))
    assert PASSWORD not in str(caught.value)
    assert describe_target(dsn) in str(caught.value)


def test_messages_name_every_host_of_a_multi_host_dsn_but_never_the_password() -> None:
    dsn = f"postgresql://app:{PASSWORD}@db1:5432,db2:5433/app?target_session_attrs=read-write"
    assert describe_target(dsn) == "db1:5432,db2:5433/app"
