"""Each service's own PostgreSQL role and database, and its own RabbitMQ user, on the
local servers (idempotent).

    ensure_database(admin_url, database="ticketing_auth", role="ticketing_auth", password="...")
    urls = ensure_bus_users("amqp://guest:guest@127.0.0.1:5672/myvhost")  # service -> URL
    rabbitmqctl("add_vhost", "myvhost")

The database is owned by its role and only that role may connect to it: CONNECT is
revoked from PUBLIC, so one service's credentials cannot open another's database. Each
service on the bus gets a broker user of its own (named after it) whose permissions on
the vhost are shared_lib.events.broker.permissions(service): it may publish only its own
subjects, so no service can forge another's events.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import psycopg
from psycopg import sql

from ticketing_devtools.backing import pg_admin_url_as_configured, rabbitmqctl, url_host
from ticketing_devtools.catalog import SERVICES
from ticketing_devtools.devkeys import ensure_dev_secrets

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
    *, database: str, role: str, password: str, host: str | None = None, port: int | None = None
) -> str:
    """A service's own URL: its role and database on PG_ADMIN_URL's server (or at `host`
    and `port`, e.g. a proxy in front of it)."""
    parts = urlsplit(pg_admin_url_as_configured())
    server = url_host(host or parts.hostname or "127.0.0.1")
    address = f"{server}:{port or parts.port or 5432}"
    netloc = f"{quote(role, safe='')}:{quote(password, safe='')}@{address}"
    return urlunsplit(("postgresql", netloc, f"/{database}", "", ""))


# The services that connect to RabbitMQ, each as its own user.
BUS_SERVICES = tuple(service.name for service in SERVICES if service.events)


def vhost_of(url: str) -> str:
    """The virtual host an AMQP URL names ("/" when it names none, as kombu reads it)."""
    path = urlsplit(url).path
    return unquote(path[1:]) if len(path) > 1 else "/"


def user_url(url: str, *, user: str, password: str, vhost: str | None = None) -> str:
    """`url` (host, port, vhost) with another user, and optionally another vhost."""
    parts = urlsplit(url)
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@"
    netloc += url_host(parts.hostname or "127.0.0.1")
    if parts.port:
        netloc += f":{parts.port}"
    path = parts.path if vhost is None else "/" + quote(vhost, safe="")
    return urlunsplit((parts.scheme or "amqp", netloc, path, "", ""))


def grant_all(url: str) -> None:
    """Full rights on the URL's vhost for the URL's own (admin) user: test tools read
    every queue of a throw-away vhost."""
    user = unquote(urlsplit(url).username or "guest")
    rabbitmqctl("set_permissions", "-p", vhost_of(url), user, ".*", ".*", ".*")


def ensure_bus_users(
    url: str,
    *,
    services: Iterable[str] = BUS_SERVICES,
    producers: Mapping | None = None,
    consumed: Mapping[str, Iterable] | None = None,
    exchange: str | None = None,
) -> dict[str, str]:
    """Create (or update) each service's broker user with its least rights on the URL's
    vhost; returns service -> its URL (the URL's host, port and vhost, its own user).

    `producers` and `consumed` change the subject maps (a test app standing in for
    every service); by default they are shared_lib's."""
    from shared_lib.events import broker

    secrets = ensure_dev_secrets()
    vhost = vhost_of(url)
    existing = set(rabbitmqctl("list_users", "--no-table-headers").split())
    urls: dict[str, str] = {}
    for service in dict.fromkeys(services):
        password = secrets.broker_password(service)
        try:
            if service in existing:
                raise FileExistsError(service)
            rabbitmqctl("add_user", service, stdin=password)
        except (FileExistsError, RuntimeError):
            # There already, or added meanwhile by a run beside this one.
            rabbitmqctl("change_password", service, stdin=password)
        rights = broker.permissions(
            service,
            producers=producers or broker.PRODUCERS,
            consumed=(consumed or {}).get(service),
            exchange=exchange or broker.DEFAULT_EXCHANGE,
        )
        rabbitmqctl(
            "set_permissions", "-p", vhost, service, rights.configure, rights.write, rights.read
        )
        rabbitmqctl(
            "set_topic_permissions",
            "-p",
            vhost,
            service,
            rights.exchange,
            rights.topic_write,
            rights.topic_read,
        )
        urls[service] = user_url(url, user=service, password=password)
    return urls
