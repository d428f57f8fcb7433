"""RabbitMQ administration for tests and local tools: rabbitmqctl, throw-away vhosts,
broker URLs, each service's own broker user, queue depths.

    with throwaway_vhost(settings.RABBITMQ_URL, "ticketing-test") as vhost:
        url = broker_url(settings.RABBITMQ_URL, vhost=vhost)   # the same user, that vhost
        depths = {q.name: q.ready for q in queue_depths(vhost)}

Every command goes through rabbitmqctl (the broker runs no management plugin): the
command line in RABBITMQCTL when it is set (`docker exec <container> rabbitmqctl` for a
broker in a container; ticketing_devtools.backing sets it for a node it started), the
machine's own rabbitmqctl otherwise. The admin is the user of the URL a caller passes
(RABBITMQ_URL), never an assumed one.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from shared_lib.events import broker

# A command against a live node answers within seconds; one that takes longer is stuck
# (an unreachable node, a wrong cookie) and must not hang a test run.
RABBITMQCTL_TIMEOUT_SECONDS = 60


def rabbitmqctl_argv() -> list[str]:
    """The rabbitmqctl to run: RABBITMQCTL's command line, or the machine's."""
    if command := os.environ.get("RABBITMQCTL"):
        return shlex.split(command)
    return [shutil.which("rabbitmqctl") or "/usr/sbin/rabbitmqctl"]


def rabbitmqctl(
    *args: str,
    check: bool = True,
    stdin: str | None = None,
    argv: list[str] | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = RABBITMQCTL_TIMEOUT_SECONDS,
) -> str:
    """Run rabbitmqctl quietly (`-q`) and return its output; RuntimeError when it fails
    and `check` is set. A password goes in `stdin` (add_user and change_password read it
    there), never in the arguments, which any local user can read in the process list.
    `argv` and `env` name another rabbitmqctl than rabbitmqctl_argv()'s (a node that is
    being started and has no RABBITMQCTL yet)."""
    done = subprocess.run(
        [*(argv or rabbitmqctl_argv()), "-q", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(env) if env is not None else None,
        input=stdin,
    )
    if check and done.returncode != 0:
        # The arguments stay out of the error (a password may be one of them).
        lines = (done.stderr or done.stdout).strip().splitlines()
        raise RuntimeError(
            f"rabbitmqctl {args[0] if args else ''}: {lines[-1] if lines else 'failed'}"
        )
    return done.stdout


# --- URLs ------------------------------------------------------------------------------


def vhost_of(url: str) -> str:
    """The virtual host an AMQP URL names ("/" when it names none, as kombu reads it)."""
    path = urlsplit(url).path
    return unquote(path[1:]) if len(path) > 1 else "/"


def broker_url(
    url: str,
    *,
    user: str | None = None,
    password: str | None = None,
    host: str | None = None,
    port: int | None = None,
    vhost: str | None = None,
) -> str:
    """`url` with its user (and password), address or vhost replaced, the rest kept: the
    same broker as another user, through a relay, or on another vhost."""
    parts = urlsplit(url)
    if user is None and parts.username:
        user = unquote(parts.username)
        password = unquote(parts.password) if parts.password is not None else None
    netloc = ""
    if user is not None:
        netloc = quote(user, safe="")
        netloc += f":{quote(password, safe='')}@" if password is not None else "@"
    host = host or parts.hostname or "127.0.0.1"
    netloc += f"[{host}]" if ":" in host else host
    if port or parts.port:
        netloc += f":{port or parts.port}"
    path = parts.path if vhost is None else "/" + quote(vhost, safe="")
    return urlunsplit((parts.scheme or "amqp", netloc, path, "", ""))


# --- vhosts and users ------------------------------------------------------------------


def grant_all(url: str) -> None:
    """Full rights on the URL's vhost for the URL's own (admin) user: test tools read
    every queue of a throw-away vhost."""
    rabbitmqctl("set_permissions", "-p", vhost_of(url), broker.url_user(url), ".*", ".*", ".*")


@contextmanager
def throwaway_vhost(url: str, prefix: str) -> Iterator[str]:
    """A vhost of its own (`<prefix>-<random>`) for the duration, with full rights for
    the admin user of `url` (RABBITMQ_URL); yields its name, deletes it afterwards."""
    vhost = f"{prefix}-{uuid.uuid4().hex[:12]}"
    rabbitmqctl("add_vhost", vhost)
    try:
        grant_all(broker_url(url, vhost=vhost))
        yield vhost
    finally:
        rabbitmqctl("delete_vhost", vhost)


def ensure_bus_users(
    url: str,
    *,
    password_of: Callable[[str], str],
    services: Iterable[str] | None = None,
    producers: Mapping | None = None,
    consumed: Mapping[str, Iterable] | None = None,
    exchange: str | None = None,
) -> dict[str, str]:
    """Create (or update) each service's broker user, with the password `password_of`
    gives it, and its least rights on the URL's vhost (shared_lib.events.broker
    .permissions); returns service -> its URL (the URL's broker and vhost, its own user).

    Users are the broker's, not a vhost's: everything that provisions them on one broker
    must give a user the same password, or one run locks the other's processes out.
    `producers` and `consumed` change the subject maps (a test app standing in for every
    service); by default they are shared_lib's."""
    vhost = vhost_of(url)
    existing = set(rabbitmqctl("list_users", "--no-table-headers").split())
    urls: dict[str, str] = {}
    for service in dict.fromkeys(broker.BUS_SERVICES if services is None else services):
        password = password_of(service)
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
        urls[service] = broker_url(url, user=service, password=password)
    return urls


# --- queues ----------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueDepth:
    name: str
    ready: int
    unacked: int

    @property
    def total(self) -> int:
        return self.ready + self.unacked


def queue_depths(vhost: str) -> list[QueueDepth]:
    """Every queue of the vhost with its ready and unacknowledged messages, by name;
    RuntimeError when the broker will not say."""
    columns = ("name", "messages_ready", "messages_unacknowledged", "--no-table-headers")
    try:
        output = rabbitmqctl("list_queues", "-p", vhost, *columns)
    except (OSError, subprocess.SubprocessError) as exc:
        raise RuntimeError(f"rabbitmqctl: {exc}") from exc
    depths = []
    for line in output.splitlines():
        parts = line.split("\t")
        if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
            depths.append(QueueDepth(parts[0], int(parts[1]), int(parts[2])))
    return sorted(depths, key=lambda q: q.name)
