"""What the repository contains: the Django services and where things live.

    from ticketing_devtools.catalog import SERVICES, REPO_ROOT
    for service in SERVICES:
        print(service.name, service.directory, service.database)
    stack_run_dir(db_prefix(), gateway_port()) / STACK_FILE   # `make up` describes itself

A new service joins by adding one line to SERVICES (and its routes to gateway/routes.toml).
GATEWAY_PORT and TICKETING_DB_PREFIX, which tell one local system from another, are read
here only (gateway_port, db_prefix); as everywhere, a variable set empty counts as unset.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
VAR_DIR = REPO_ROOT / "var"
DEV_DIR = VAR_DIR / "dev"  # generated keys and secrets; never committed (.gitignore)

DEFAULT_GATEWAY_PORT = 8080
DEFAULT_DB_PREFIX = "ticketing"
# In a stack's run directory: what `ticketing-dev status` needs to find that system.
STACK_FILE = "stack.json"


def gateway_port() -> int:
    """GATEWAY_PORT: where `make up`'s gateway listens (and `make demo` finds it)."""
    value = os.environ.get("GATEWAY_PORT") or str(DEFAULT_GATEWAY_PORT)
    if not value.isdigit() or int(value) > 65535:
        raise SystemExit(f"GATEWAY_PORT must be a port number, not {value!r}")
    return int(value)


def db_prefix() -> str:
    """TICKETING_DB_PREFIX: the start of `make up`'s database names (<prefix>_auth, ...)."""
    return os.environ.get("TICKETING_DB_PREFIX") or DEFAULT_DB_PREFIX


def stack_run_dir(prefix: str, port: int) -> Path:
    """The default run directory of a stack with database prefix `prefix` and gateway
    port `port` (its heartbeats, nginx files, STACK_FILE): two systems side by side never
    share one."""
    return VAR_DIR / "run" / f"{prefix}-{port}"


# The pool runs Celery tasks. Services that only consume events need none (the consumer
# bootstep handles events itself); the expiration worker runs many short timer tasks.
SOLO_POOL = ("--pool", "solo")
# Threads, not processes: a task mostly waits on the broker's confirm, and a burst of
# expiries due in one second needs many in flight (bench/expiry.py).
THREAD_POOL = ("--pool", "threads", "--concurrency", "32")


@dataclass(frozen=True)
class DjangoService:
    name: str  # short name: URL prefixes (/admin/<name>/), routes, database
    package: str = ""  # the Django project package; default "<name>_svc"
    folder: str = ""  # the repo folder holding manage.py; default: the package's name
    mints_tokens: bool = False  # only auth_svc holds the JWT private key
    events: bool = False  # on the event bus: runs a Celery worker
    web: bool = True  # serves HTTP through gunicorn
    has_database: bool = True
    uses_stripe: bool = False  # locally talks to localstripe, which the stack starts
    calls_api: bool = False  # calls the APIs through the gateway (API_BASE_URL)
    # Its pages load Stripe.js (STRIPE_JS_URL) for Stripe Elements: locally, the stand-in
    # the stack's localstripe serves through the gateway.
    loads_stripe_js: bool = False
    worker_pool: tuple[str, ...] = SOLO_POOL
    gunicorn_conf: str = "shared_lib.gunicorn_conf"  # the web process's config module

    @property
    def project(self) -> str:
        return self.package or f"{self.name}_svc"

    @property
    def directory(self) -> Path:
        return REPO_ROOT / (self.folder or self.project)

    def database(self, prefix: str = DEFAULT_DB_PREFIX) -> str:
        return f"{prefix}_{self.name}"


SERVICES: tuple[DjangoService, ...] = (
    DjangoService("auth", mints_tokens=True),
    DjangoService("tickets", events=True),
    DjangoService("orders", events=True),
    DjangoService("payments", events=True, uses_stripe=True),
    DjangoService(
        "expiration",
        package="expiration_worker",
        events=True,
        web=False,
        has_database=False,
        worker_pool=THREAD_POOL,
    ),
    # The web client: server-rendered pages that call the APIs through the gateway. It
    # owns no data, so no database; the gateway sends it every path no route claims. Its
    # pages wait on the APIs, so its workers are threaded (client_site.gunicorn_conf).
    DjangoService(
        "client",
        package="client_site",
        folder="client",
        has_database=False,
        calls_api=True,
        loads_stripe_js=True,
        gunicorn_conf="client_site.gunicorn_conf",
    ),
)
WEB_SERVICES = tuple(s for s in SERVICES if s.web)
DATABASE_SERVICES = tuple(s for s in SERVICES if s.has_database)
# Every process with a Django SECRET_KEY (signing: admin sessions, the client's CSRF).
SECRET_KEY_SERVICES = tuple(s for s in SERVICES if s.web or s.has_database)


def service(name: str) -> DjangoService:
    for candidate in SERVICES:
        if candidate.name == name:
            return candidate
    raise KeyError(f"No service {name!r}; known: {', '.join(s.name for s in SERVICES)}")
