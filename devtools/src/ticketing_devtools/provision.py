"""Each service's own PostgreSQL role and database on the local server (idempotent), and
the throw-away databases of a run.

    ensure_database(admin_url, database="ticketing_auth", role="ticketing_auth", password="...")
    with throwaway_databases("ticketing_systest_1a2b"):   # every service's, dropped after
        Stack(db_prefix="ticketing_systest_1a2b").start()

The database is owned by its role and only that role may connect to it: CONNECT is
revoked from PUBLIC, so one service's credentials cannot open another's database. (Each
service's own RabbitMQ user is shared_lib.testing.rabbitmq.ensure_bus_users.)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
from psycopg import sql

from ticketing_devtools.backing import admin_url, pg_admin_url_as_configured, url_host
from ticketing_devtools.catalog import DATABASE_SERVICES

# Any fixed number: the key of the advisory lock that serialises provisioning.
PROVISION_LOCK_KEY = 0x7469636B  # "tick"


def ensure_database(url: str, *, database: str, role: str, password: str) -> None:
    # CREATE DATABASE cannot run inside a transaction block, hence autocommit.
    with psycopg.connect(url, autocommit=True) as conn:
        # Two runs provisioning at once (a checkout and a fresh clone, `make up` beside
        # `make test`) would race on the same role and grants ("tuple concurrently
        # updated"); a session advisory lock makes them take turns. Released on close.
        conn.execute("SELECT pg_advisory_lock(%s)", [PROVISION_LOCK_KEY])
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role]).fetchone()
        # CREATEDB lets the test runner create its throw-away test_<name> database.
        verb = "ALTER" if exists else "CREATE"
        conn.execute(
            sql.SQL(verb + " ROLE {} WITH LOGIN CREATEDB PASSWORD {}").format(
                sql.Identifier(role), sql.Literal(password)
            )
        )
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [database]).fetchone():
            conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(database), sql.Identifier(role)
                )
            )
        conn.execute(
            sql.SQL("REVOKE CONNECT, TEMPORARY ON DATABASE {} FROM PUBLIC").format(
                sql.Identifier(database)
            )
        )
        conn.execute(
            sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {} TO {}").format(
                sql.Identifier(database), sql.Identifier(role)
            )
        )


def drop_database(url: str, *, database: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database))
        )


@contextmanager
def throwaway_databases(db_prefix: str) -> Iterator[str]:
    """Every service's database under `db_prefix` (Stack and prepare() create them) is
    dropped when the block ends, however it ends, even when creating them failed
    halfway; yields the prefix."""
    try:
        yield db_prefix
    finally:
        for service in DATABASE_SERVICES:
            drop_database(admin_url(), database=service.database(db_prefix))


def database_url(
    *, database: str, role: str, password: str, host: str | None = None, port: int | None = None
) -> str:
    """A service's own URL: its role and database on PG_ADMIN_URL's server (or at `host`
    and `port`, e.g. a proxy in front of it), with that URL's options (`sslmode`)."""
    parts = urlsplit(pg_admin_url_as_configured())
    server = url_host(host or parts.hostname or "127.0.0.1")
    address = f"{server}:{port or parts.port or 5432}"
    netloc = f"{quote(role, safe='')}:{quote(password, safe='')}@{address}"
    return urlunsplit(("postgresql", netloc, f"/{database}", parts.query, ""))
