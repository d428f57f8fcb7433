"""Each service's own PostgreSQL role and database on the local server (idempotent).

    from ticketing_devtools.provision import ensure_database
    ensure_database(admin_url, database="ticketing_auth", role="ticketing_auth", password="...")

The database is owned by its role and only that role may connect to it: CONNECT is
revoked from PUBLIC, so one service's credentials cannot open another's database.
"""

from __future__ import annotations

import os

import psycopg
from psycopg import sql

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def admin_url() -> str:
    return os.environ.get("PG_ADMIN_URL", DEFAULT_ADMIN_URL)


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


def database_url(
    *, database: str, role: str, password: str, host: str = "127.0.0.1", port: int = 5432
) -> str:
    return f"postgresql://{role}:{password}@{host}:{port}/{database}"
