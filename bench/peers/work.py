"""The unit of work every peer of bench/events.py does per event, written once.

    sql = Statements.for_tables(Tables.named("bench_kombu"))
    outcome = handle(conn, sql, envelope, consumer="bench.peer.kombu", correlation_id=cid)
    outcome = await handle_async(aconn, sql, envelope, consumer=..., correlation_id=cid)

One transaction per event, the same rows the project's demo worker writes: the inbox row
(a redelivery is a duplicate and changes nothing else), the ticket replica applied in
version order (version 0 creates; v on top of v - 1 updates; at or below the stored
version is stale; further ahead raises NotYet), the handler's effect row, then COMMIT.
Each peer has tables of its own, created LIKE the project's (same columns, indexes and
constraints), so a peer writes exactly the row shapes the project writes.

The peers run as scripts (`python bench/peers/<peer>.py`), so this directory is on sys.path.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg

# Prefetch of every peer's consumer, fixed for the comparison.
PREFETCH = 32
FIRST_VERSION = 0


class NotYet(Exception):
    """The event is ahead of the replica's version: its predecessor has not arrived."""


@dataclass(frozen=True)
class Tables:
    inbox: str
    replica: str
    effect: str

    @classmethod
    def named(cls, prefix: str) -> Tables:
        return cls(f"{prefix}_inbox", f"{prefix}_replica", f"{prefix}_effect")


def create_tables(conn: psycopg.Connection, mine: Tables, *, like: Tables) -> None:
    """The peer's own tables, shaped exactly like the project's (`like`)."""
    for table, model in zip(
        (mine.inbox, mine.replica, mine.effect),
        (like.inbox, like.replica, like.effect),
        strict=True,
    ):
        conn.execute(f"CREATE TABLE {table} (LIKE {model} INCLUDING ALL)")
    conn.commit()


@dataclass(frozen=True)
class Statements:
    inbox: str
    create: str
    update: str
    version: str
    effect: str

    @classmethod
    def for_tables(cls, t: Tables) -> Statements:
        # Table names are the bench's own (Tables.named), never input: S608 does not apply.
        return cls(
            inbox=(
                f"INSERT INTO {t.inbox} (message_id, consumer, subject, correlation_id,"  # noqa: S608
                " processed_at) VALUES (%s, %s, %s, %s, %s)"
                " ON CONFLICT (message_id, consumer) DO NOTHING RETURNING id"
            ),
            create=(
                f"INSERT INTO {t.replica} (id, title, price, user_id, order_id, version)"  # noqa: S608
                " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING RETURNING version"
            ),
            update=(
                f"UPDATE {t.replica} SET title = %s, price = %s, user_id = %s, order_id = %s,"  # noqa: S608
                " version = %s WHERE id = %s AND version = %s RETURNING version"
            ),
            version=f"SELECT version FROM {t.replica} WHERE id = %s",  # noqa: S608
            effect=(
                f"INSERT INTO {t.effect} (event_id, subject, aggregate_id, version)"  # noqa: S608
                " VALUES (%s, %s, %s, %s)"
            ),
        )


Query = tuple[str, tuple[Any, ...]]


def unit_of_work(
    sql: Statements, envelope: dict[str, Any], *, consumer: str, correlation_id: str
) -> Generator[Query, tuple[Any, ...] | None, str]:
    """The statements of one event, each sent the row it returned; returns the outcome.

    Written once as a generator so the sync and the asyncio peers run the same SQL.
    """
    subject = envelope["subject"]
    data = envelope["data"]
    version = data["version"]
    inserted = yield (
        sql.inbox,
        (envelope["id"], consumer, subject, correlation_id or "", datetime.now(UTC)),
    )
    if inserted is None:
        return "duplicate"
    fields = (data["title"], data["price"], data["userId"], data.get("orderId"))
    if version == FIRST_VERSION:
        created = yield sql.create, (data["id"], *fields, version)
        outcome = "created" if created is not None else "stale"
    else:
        updated = yield sql.update, (*fields, version, data["id"], version - 1)
        if updated is not None:
            outcome = "updated"
        else:
            current = yield sql.version, (data["id"],)
            if current is None or version > current[0] + 1:
                raise NotYet(f"replica {data['id']}: v{version} before its predecessor")
            outcome = "stale"
    yield sql.effect, (envelope["id"], f"{subject}:{outcome}", data["id"], version)
    return outcome


def handle(
    conn: psycopg.Connection,
    sql: Statements,
    envelope: dict[str, Any],
    *,
    consumer: str,
    correlation_id: str,
) -> str:
    """One event in one transaction on a psycopg connection (not in autocommit)."""
    work = unit_of_work(sql, envelope, consumer=consumer, correlation_id=correlation_id)
    try:
        query = next(work)
        while True:
            cursor = conn.execute(*query)
            query = work.send(cursor.fetchone() if cursor.description else None)
    except StopIteration as done:
        conn.commit()
        return done.value
    except BaseException:
        conn.rollback()
        raise


async def handle_async(
    conn: psycopg.AsyncConnection,
    sql: Statements,
    envelope: dict[str, Any],
    *,
    consumer: str,
    correlation_id: str,
) -> str:
    """handle(), on an asyncio connection."""
    work = unit_of_work(sql, envelope, consumer=consumer, correlation_id=correlation_id)
    try:
        query = next(work)
        while True:
            cursor = await conn.execute(*query)
            query = work.send(await cursor.fetchone() if cursor.description else None)
    except StopIteration as done:
        await conn.commit()
        return done.value
    except BaseException:
        await conn.rollback()
        raise


@dataclass(frozen=True)
class PeerConfig:
    """What bench/events.py tells a peer process, through its environment."""

    database_url: str
    amqp_url: str
    queue: str
    prefix: str  # of the peer's tables

    @property
    def tables(self) -> Tables:
        return Tables.named(self.prefix)

    @classmethod
    def from_env(cls) -> PeerConfig:
        return cls(
            database_url=os.environ["BENCH_DATABASE_URL"],
            amqp_url=os.environ["BENCH_AMQP_URL"],
            queue=os.environ["BENCH_QUEUE"],
            prefix=os.environ["BENCH_TABLES"],
        )

    def env(self) -> dict[str, str]:
        return {
            "BENCH_DATABASE_URL": self.database_url,
            "BENCH_AMQP_URL": self.amqp_url,
            "BENCH_QUEUE": self.queue,
            "BENCH_TABLES": self.prefix,
        }
