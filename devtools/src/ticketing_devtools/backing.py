"""The backing servers the system needs: used where they answer, started in user space
where nothing does, and stopped again by `make down`.

    from ticketing_devtools.backing import ensure_backing_servers, stop_backing_servers
    ensure_backing_servers()   # PostgreSQL, RabbitMQ, Redis at the URLs, or started here
    stop_backing_servers()     # what ensure_backing_servers() started (`make down`)
    export_rabbitmqctl()       # RABBITMQCTL for a RabbitMQ node started here
    ensure_nginx()             # installs Debian's nginx when it is missing and we are root
    ensure_chromium()          # likewise Debian's Chromium, for the browser tests

Every host, port, user and password comes from PG_ADMIN_URL, RABBITMQ_URL and REDIS_URL.
A server already answering at its URL is used as it is (as on a machine that runs them
as system services). Where nothing answers, one is started from the operating system's
packages with its own data directory under BACKING_DIR (default `var/backing/`, one
directory per server and port), listening on the URL's host and port only, with the URL's
user and password: PostgreSQL with password (SCRAM) authentication on TCP, RabbitMQ as a
node of its own (own node name and Erlang cookie), Redis with `requirepass` when the URL
has a password. They outlive `make up` (its Ctrl-C stops the application only) until
`make down`.

Broker administration (shared_lib.testing.rabbitmq.rabbitmqctl, here and in the test
suites) runs the command line in RABBITMQCTL, or the machine's rabbitmqctl; for a node
started here, export_rabbitmqctl() sets RABBITMQCTL to the command that reaches it.
"""

from __future__ import annotations

import fcntl
import os
import platform
import secrets
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import psycopg

from shared_lib.testing.processes import is_listening
from shared_lib.testing.rabbitmq import rabbitmqctl, vhost_of
from shared_lib.testing.waiting import wait_for
from ticketing_devtools.catalog import REPO_ROOT

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672//"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
START_TIMEOUT_SECONDS = 90.0


def pg_admin_url_as_configured() -> str:
    return os.environ.get("PG_ADMIN_URL") or DEFAULT_ADMIN_URL


def admin_url(database: str | None = None) -> str:
    """PG_ADMIN_URL (a superuser), in `database` when given; for a server started here
    without a password in the URL, with the password it was given (pg_password_file)."""
    url = pg_admin_url_as_configured()
    parts = urlsplit(url)
    stored = pg_password_file(parts.port or 5432)
    # Only towards a server on this machine: never send a local secret to another host.
    if parts.password is None and is_loopback(parts.hostname or "") and stored.exists():
        user = quote(unquote(parts.username or "postgres"), safe="")
        netloc = f"{user}:{quote(stored.read_text().strip(), safe='')}@"
        netloc += url_host(parts.hostname or "127.0.0.1")
        if parts.port:
            netloc += f":{parts.port}"
        url = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return url if database is None else in_database(url, database)


def in_database(url: str, database: str) -> str:
    """`url` (a PostgreSQL URL) naming `database` instead of its own: the same server,
    login and query (`?sslmode=require` holds for every database)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + quote(database, safe="")))


def url_host(host: str) -> str:
    """`host` as written in a URL: an IPv6 address in brackets."""
    return f"[{host}]" if ":" in host else host


LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")


def is_loopback(host: str) -> bool:
    return host in LOOPBACK_HOSTS or host.startswith("127.")


# RABBITMQ_URL and REDIS_URL are read here only: set empty (as .env.example leaves some
# values) they count as unset, wherever they are used.
def rabbitmq_url() -> str:
    return os.environ.get("RABBITMQ_URL") or DEFAULT_RABBITMQ_URL


def redis_url() -> str:
    return os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL


def backing_dir() -> Path:
    return Path(os.environ.get("BACKING_DIR") or REPO_ROOT / "var" / "backing")


@dataclass(frozen=True)
class Endpoint:
    kind: str  # "postgresql", "rabbitmq", "redis": also the name of its directory
    label: str
    url: str
    default_port: int

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or self.default_port

    @property
    def user(self) -> str | None:
        name = urlsplit(self.url).username
        return unquote(name) if name else None

    @property
    def password(self) -> str | None:
        value = urlsplit(self.url).password
        return unquote(value) if value else None

    @property
    def directory(self) -> Path:
        return backing_dir() / f"{self.kind}-{self.port}"


def endpoints() -> tuple[Endpoint, ...]:
    return (
        Endpoint("postgresql", "PostgreSQL", pg_admin_url_as_configured(), 5432),
        Endpoint("rabbitmq", "RabbitMQ", rabbitmq_url(), 5672),
        Endpoint("redis", "Redis", redis_url(), 6379),
    )


def _write_secret(path: Path, value: str, *, mode: int = 0o600, owner: str | None = None) -> None:
    """A new file holding `value`, never readable by anyone else, not even for a moment
    (created with its mode; refuses to follow a link or reuse a file)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "w") as handle:
        if owner:
            shutil.chown(path, owner, owner)
        handle.write(value)


@contextmanager
def _exclusive() -> Iterator[None]:
    """One run at a time starts or stops servers (make test beside a starting make up)."""
    root = backing_dir()
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _process_is(pid: int, name: str) -> bool:
    """Whether `pid` is a live process running `name` (a pid file can outlive its process,
    and the pid be reused by another one)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        if not Path("/proc/self").exists():  # no /proc (macOS): liveness is all we know
            return _alive(pid)
        return False
    except OSError:
        return False
    return name.encode() in cmdline


def _say(line: str) -> None:
    print(f"[backing] {line}", flush=True)


# --- packages -------------------------------------------------------------------------

# Per server: the package on Debian/Ubuntu, Fedora, Homebrew.
_PACKAGES = {
    "postgresql": ("postgresql", "postgresql-server", "postgresql@15"),
    "rabbitmq": ("rabbitmq-server", "rabbitmq-server", "rabbitmq"),
    "redis": ("redis-server", "redis", "redis"),
}


def _os_family(release_file: Path = Path("/etc/os-release")) -> str:
    if platform.system() == "Darwin":
        return "macos"
    try:
        release = release_file.read_text()
    except OSError:
        return "unknown"
    fields = dict(
        line.split("=", 1) for line in release.splitlines() if "=" in line and line[0] != "#"
    )
    ids = {fields.get("ID", "").strip('"'), *fields.get("ID_LIKE", "").strip('"').split()}
    if ids & {"debian", "ubuntu"}:
        return "debian"
    if ids & {"fedora", "rhel", "centos"}:
        return "fedora"
    return "unknown"


def install_command(kinds: list[str]) -> str:
    """The command that installs these servers on this operating system."""
    family = _os_family()
    column = {"debian": 0, "fedora": 1, "macos": 2}.get(family, 0)
    packages = " ".join(_PACKAGES[kind][column] for kind in kinds)
    if family == "macos":
        return f"brew install {packages}"
    if family == "fedora":
        return f"sudo dnf install -y {packages}"
    return f"sudo apt-get install -y {packages}"


def _apt_install(packages: list[str], purpose: str) -> None:
    print(f"Installing {' '.join(packages)} (Debian's packages) for {purpose}...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
        check=True,
        env=env,
    )


def _can_apt() -> bool:
    return os.geteuid() == 0 and shutil.which("apt-get") is not None


def _first_file(candidates: list[str | Path]) -> str | None:
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def _pg_bin(name: str) -> str | None:
    """A PostgreSQL server binary: on PATH, or where Debian, Fedora or Homebrew put it."""

    def version(path: Path) -> int:
        digits = "".join(ch for ch in path.parent.name if ch.isdigit()) or "0"
        return int(digits)

    versioned = sorted(
        Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), key=lambda p: -version(p.parent)
    )
    brew = sorted(
        [
            *Path("/opt/homebrew/opt").glob(f"postgresql@*/bin/{name}"),
            *Path("/usr/local/opt").glob(f"postgresql@*/bin/{name}"),
        ],
        reverse=True,
    )
    return _first_file([shutil.which(name) or "", *versioned, *brew, f"/usr/bin/{name}"])


def _rabbitmq_bin(name: str) -> str | None:
    # Debian's /usr/sbin scripts re-run everything as the `rabbitmq` user with its system
    # node's cookie; the scripts behind them take a node of our own.
    return _first_file(
        [f"/usr/lib/rabbitmq/bin/{name}", shutil.which(name) or "", f"/usr/sbin/{name}"]
    )


def _redis_bin() -> str | None:
    return _first_file([shutil.which("redis-server") or "", "/usr/bin/redis-server"])


_FINDERS = {
    "postgresql": lambda: _pg_bin("initdb") and _pg_bin("pg_ctl"),
    "rabbitmq": lambda: _rabbitmq_bin("rabbitmq-server") and _rabbitmq_bin("rabbitmqctl"),
    "redis": _redis_bin,
}


def _ensure_installed(kinds: list[str]) -> None:
    missing = [kind for kind in kinds if not _FINDERS[kind]()]
    if not missing:
        return
    if _can_apt():
        _apt_install([_PACKAGES[kind][0] for kind in missing], "the backing servers")
        missing = [kind for kind in missing if not _FINDERS[kind]()]
        if not missing:
            return
    names = ", ".join(kind for kind in missing)
    raise SystemExit(
        f"Nothing answers at the configured URL of {names}, and its server is not installed: "
        f"install it with `{install_command(missing)}` (or point the URL at a running one)"
    )


# --- running as another user --------------------------------------------------------


def _as_postgres_user() -> bool:
    # PostgreSQL refuses to run as root: as root, it runs as the `postgres` account the
    # package created.
    return os.geteuid() == 0


def _postgres_prefix() -> list[str]:
    if not _as_postgres_user():
        return []
    try:
        import pwd

        pwd.getpwnam("postgres")
    except KeyError:
        raise SystemExit(
            "PostgreSQL cannot run as root and there is no `postgres` account: run make as "
            "a normal user"
        ) from None
    return ["runuser", "-u", "postgres", "--"]


def _postgres_home(endpoint: Endpoint) -> Path:
    """Where the cluster lives. As root the `postgres` account must reach it, which a
    checkout under a private home or temp directory does not allow: it then lives in
    the temp directory, and var/backing holds a link to it."""
    link = endpoint.directory
    if not _as_postgres_user():
        link.mkdir(parents=True, exist_ok=True)
        return link
    if link.exists():  # through the link, when its target is still there
        real = link.resolve()
        import pwd

        info = real.stat()
        if info.st_uid != pwd.getpwnam("postgres").pw_uid or info.st_mode & 0o077:
            raise SystemExit(
                f"{real} (linked from {link}) is not a private directory of the postgres "
                f"account: remove {link} and run again"
            )
        return real
    link.unlink(missing_ok=True)  # a link whose target the machine cleaned away
    real = Path(tempfile.mkdtemp(prefix=f"ticketing-{link.name}-"))
    shutil.chown(real, "postgres", "postgres")
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(real)
    return real


# --- PostgreSQL ------------------------------------------------------------------------


def pg_password_file(port: int) -> Path:
    return backing_dir() / f"postgresql-{port}.password"


def _start_postgresql(endpoint: Endpoint) -> None:
    home = _postgres_home(endpoint)
    data, log = home / "data", home / "server.log"
    prefix = _postgres_prefix()
    user = endpoint.user or "postgres"
    if not (data / "PG_VERSION").exists():
        password = endpoint.password
        if password is None:
            # No password in PG_ADMIN_URL: one of our own, which admin_url() then adds.
            stored = pg_password_file(endpoint.port)
            stored.parent.mkdir(parents=True, exist_ok=True)
            if not stored.exists():
                _write_secret(stored, secrets.token_urlsafe(24))
            password = stored.read_text().strip()
        pwfile = home / f"initdb-password-{os.getpid()}"
        _write_secret(pwfile, password + "\n", owner="postgres" if prefix else None)
        try:
            _run(
                [
                    *prefix,
                    _pg_bin("initdb") or "initdb",
                    "-D",
                    str(data),
                    "-U",
                    user,
                    f"--pwfile={pwfile}",
                    "--auth-host=scram-sha-256",
                    "--auth-local=scram-sha-256",
                    "-E",
                    "UTF8",
                    "--no-locale",
                ],
                f"initdb (for {endpoint.directory})",
            )
        finally:
            pwfile.unlink(missing_ok=True)
    # TCP only, on the URL's address: no Unix socket (whose path would be limited to ~100
    # characters and open to every local user), and pg_ctl's wait needs none.
    options = f"-c listen_addresses={shlex.quote(endpoint.host)} -p {endpoint.port} -k ''"
    _run(
        [
            *prefix,
            _pg_bin("pg_ctl") or "pg_ctl",
            "-D",
            str(data),
            "-l",
            str(log),
            "-o",
            options,
            "-w",
            "-t",
            str(int(START_TIMEOUT_SECONDS)),
            "start",
        ],
        f"pg_ctl start (its log: {log})",
    )


def _stop_postgresql(directory: Path) -> bool:
    data = directory.resolve() / "data"
    pidfile = data / "postmaster.pid"
    try:
        pid = int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return False
    if not _process_is(pid, "postgres"):
        pidfile.unlink(missing_ok=True)  # left by a crash: nothing to stop
        return False
    _run(
        [
            *_postgres_prefix(),
            _pg_bin("pg_ctl") or "pg_ctl",
            "-D",
            str(data),
            "-m",
            "fast",
            "-w",
            "stop",
        ],
        "pg_ctl stop",
    )
    return True


# --- RabbitMQ --------------------------------------------------------------------------


def rabbitmq_node(port: int) -> str:
    return f"ticketing{port}@localhost"


def _rabbitmq_env(directory: Path, port: int) -> dict[str, str]:
    return {**os.environ, **_node_env(directory, port)}


def _node_env(directory: Path, port: int) -> dict[str, str]:
    """What the node of our own and every rabbitmqctl against it run with."""
    return {
        # The Erlang cookie is $HOME/.erlang.cookie: a home of its own gives the node and
        # every rabbitmqctl call against it their own cookie.
        "HOME": str(directory / "home"),
        "RABBITMQ_NODENAME": rabbitmq_node(port),
        "RABBITMQ_USE_LONGNAME": "false",
        "RABBITMQ_CONF_ENV_FILE": str(directory / "rabbitmq-env.conf"),
        "RABBITMQ_CONFIG_FILE": str(directory / "rabbitmq"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(directory / "enabled_plugins"),
        "RABBITMQ_MNESIA_BASE": str(directory / "mnesia"),
        "RABBITMQ_LOG_BASE": str(directory / "log"),
        "RABBITMQ_PID_FILE": str(directory / "rabbitmq.pid"),
        "RABBITMQ_NODE_PORT": str(port),
        # Erlang's distribution port: RabbitMQ's rule (node port + 20000), said outright
        # because the machine's own node may hold the default one.
        "RABBITMQ_DIST_PORT": str(port + 20000),
        "ERL_EPMD_ADDRESS": "127.0.0.1",
        "ERL_CRASH_DUMP": str(directory / "erl_crash.dump"),
    }


def _start_rabbitmq(endpoint: Endpoint) -> None:
    directory = endpoint.directory
    home = directory / "home"
    home.mkdir(parents=True, exist_ok=True)
    cookie = home / ".erlang.cookie"
    if not cookie.exists():
        _write_secret(cookie, secrets.token_hex(16).upper(), mode=0o400)
    (directory / "rabbitmq-env.conf").write_text("")
    (directory / "enabled_plugins").write_text("[].\n")
    (directory / "rabbitmq.conf").write_text(
        f"listeners.tcp.1 = {endpoint.host}:{endpoint.port}\n"
        "distribution.listener.interface = 127.0.0.1\n"
    )
    env = _rabbitmq_env(directory, endpoint.port)
    # Marks the node as ours: rabbitmqctl() and make down go by it.
    (directory / "node").write_text(rabbitmq_node(endpoint.port) + "\n")
    with open(directory / "server.log", "ab") as log:
        server = subprocess.Popen(
            [_rabbitmq_bin("rabbitmq-server") or "rabbitmq-server"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # outlives make up and its Ctrl-C, until make down
        )
    # await_startup waits for a node that is booting, but fails at once while the Erlang
    # VM is not reachable yet.
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    ctl = partial(rabbitmqctl, argv=_ctl_command(endpoint.port), env=env)
    while True:
        try:
            ctl("await_startup", "--timeout", "60", timeout=START_TIMEOUT_SECONDS)
            break
        except (RuntimeError, subprocess.TimeoutExpired):
            if time.monotonic() > deadline or server.poll() is not None:
                log = directory / "server.log"
                raise SystemExit(f"RabbitMQ did not start: see {log}") from None
            time.sleep(0.5)
    # Always this node, whatever RABBITMQCTL names for the tools.
    user, password = endpoint.user or "guest", endpoint.password or "guest"
    if user == "guest":
        ctl("change_password", "guest", stdin=password)
    else:
        users = ctl("list_users", "--no-table-headers").split()
        ctl("add_user" if user not in users else "change_password", user, stdin=password)
        ctl("set_user_tags", user, "administrator")
        ctl("set_permissions", "-p", "/", user, ".*", ".*", ".*")
        # A node of our own has no use for the well-known guest/guest login.
        ctl("delete_user", "guest", check=False)
    vhost = vhost_of(endpoint.url)
    if vhost != "/":
        ctl("add_vhost", vhost, check=False)
        ctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")


def _ctl_command(port: int) -> list[str]:
    return [_rabbitmq_bin("rabbitmqctl") or "rabbitmqctl", "-n", rabbitmq_node(port)]


def _stop_rabbitmq(directory: Path) -> bool:
    port = int(directory.name.rsplit("-", 1)[1])
    if not (directory / "node").exists():
        return False
    try:
        rabbitmqctl(
            "shutdown", argv=_ctl_command(port), env=_rabbitmq_env(directory, port), timeout=120
        )
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        raise SystemExit(str(exc)) from None
    (directory / "node").unlink()
    return True


def own_rabbitmqctl() -> str | None:
    """The command line that reaches the node RABBITMQ_URL names when it is one started
    here (its own node name and Erlang cookie); None for any other node."""
    endpoint = endpoints()[1]
    if not (endpoint.directory / "node").exists():
        return None
    node_env = _node_env(endpoint.directory, endpoint.port)
    return shlex.join(
        ["env", *(f"{k}={v}" for k, v in node_env.items()), *_ctl_command(endpoint.port)]
    )


def export_rabbitmqctl() -> None:
    """Set RABBITMQCTL to own_rabbitmqctl() unless it is set already, so that every
    rabbitmqctl() here, and every process started from here (the test suites), reaches a
    node started here rather than the machine's."""
    if not os.environ.get("RABBITMQCTL") and (command := own_rabbitmqctl()):
        os.environ["RABBITMQCTL"] = command


# --- Redis -----------------------------------------------------------------------------


def _start_redis(endpoint: Endpoint) -> None:
    directory = endpoint.directory
    directory.mkdir(parents=True, exist_ok=True)
    argv = [
        _redis_bin() or "redis-server",
        "--bind",
        endpoint.host,
        "--port",
        str(endpoint.port),
        "--dir",
        str(directory),
        "--daemonize",
        "yes",
        "--pidfile",
        str(directory / "redis.pid"),
        "--logfile",
        str(directory / "server.log"),
        "--save",
        "",
        "--appendonly",
        "no",
    ]
    config = ""
    if endpoint.password:
        # Through stdin ("-" as the config file), not argv, which any local user can read.
        escaped = endpoint.password.replace("\\", "\\\\").replace('"', '\\"')
        config = f'requirepass "{escaped}"\n'
    _run([argv[0], "-", *argv[1:]], "redis-server", stdin=config)


def _stop_redis(directory: Path) -> bool:
    pidfile = directory / "redis.pid"
    if not pidfile.exists():
        return False
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return False
    if not _process_is(pid, "redis-server"):
        pidfile.unlink(missing_ok=True)  # left by a crash: nothing to stop
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _alive(pid):
        raise SystemExit(f"redis-server (pid {pid}) did not stop within 30 s")
    pidfile.unlink(missing_ok=True)
    return True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# --- the whole set ---------------------------------------------------------------------

_STARTERS = {"postgresql": _start_postgresql, "rabbitmq": _start_rabbitmq, "redis": _start_redis}
_STOPPERS = {"postgresql": _stop_postgresql, "rabbitmq": _stop_rabbitmq, "redis": _stop_redis}


def _run(
    argv: list[str], what: str, env: dict[str, str] | None = None, stdin: str | None = None
) -> None:
    done = subprocess.run(
        argv, capture_output=True, text=True, env=env, check=False, timeout=180, input=stdin
    )
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        raise SystemExit(f"{what} failed: {lines[-1] if lines else f'exit {done.returncode}'}")


def ensure_backing_servers() -> None:
    """Every backing server answering at its URL: the ones already running are used;
    the others are started here in user space (installed first when possible)."""
    if any(not is_listening(endpoint.host, endpoint.port) for endpoint in endpoints()):
        with _exclusive():  # and look again: another run may have started them meanwhile
            down = [e for e in endpoints() if not is_listening(e.host, e.port)]
            if down:
                _start(down)
    _check_pg_admin_login()
    export_rabbitmqctl()


def _check_pg_admin_login() -> None:
    """A server answering at PG_ADMIN_URL that refuses its login is one clear line, not a
    traceback at the first query (a stock Debian cluster asks for a password)."""
    try:
        psycopg.connect(admin_url(), connect_timeout=10).close()
    except psycopg.OperationalError as exc:
        endpoint = endpoints()[0]
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise SystemExit(
            f"PostgreSQL at {endpoint.host}:{endpoint.port} refused PG_ADMIN_URL's login as "
            f"{endpoint.user or 'postgres'} ({reason}). Set PG_ADMIN_URL to a superuser that can "
            f"log in there, e.g. postgresql://postgres:PASSWORD@{endpoint.host}:{endpoint.port}"
            "/postgres, or to a free port (e.g. 127.0.0.1:5433) where make starts a server "
            "of its own."
        ) from None


def _start(down: list[Endpoint]) -> None:
    remote = [f"{e.label} at {e.host}:{e.port}" for e in down if not is_loopback(e.host)]
    if remote:
        raise SystemExit(
            f"Nothing answers for {', '.join(remote)}; make starts servers of its own on "
            "this machine's loopback addresses only: start it there, or point the URL at "
            "127.0.0.1"
        )
    _ensure_installed([endpoint.kind for endpoint in down])
    # Installing a package can start its system service (with systemd), which then
    # answers at the default port: use it rather than start a second one there.
    for endpoint in [e for e in down if is_listening(e.host, e.port)]:
        _say(f"{endpoint.label} now answers at {endpoint.host}:{endpoint.port}: using it")
        down.remove(endpoint)
    for endpoint in down:
        _say(
            f"nothing answers at {endpoint.host}:{endpoint.port}: starting {endpoint.label} "
            f"in {endpoint.directory} (make down stops it)"
        )
        endpoint.directory.parent.mkdir(parents=True, exist_ok=True)
        _STARTERS[endpoint.kind](endpoint)
        try:
            wait_for(
                lambda e=endpoint: is_listening(e.host, e.port),
                timeout=START_TIMEOUT_SECONDS,
                interval=0.2,
                what=f"{endpoint.label} on {endpoint.host}:{endpoint.port} (its log: "
                f"{endpoint.directory / 'server.log'})",
            )
        except AssertionError as exc:
            raise SystemExit(str(exc)) from None


def stop_backing_servers() -> tuple[list[str], list[str]]:
    """Stop every server ensure_backing_servers() started under BACKING_DIR: what stopped,
    and what could not be stopped (each tried whatever the others did)."""
    stopped: list[str] = []
    failed: list[str] = []
    if not backing_dir().is_dir():
        return stopped, failed
    with _exclusive():
        for directory in sorted(backing_dir().iterdir()):
            kind, _, port = directory.name.rpartition("-")
            if kind not in _STOPPERS or not port.isdigit() or not directory.is_dir():
                continue
            try:
                if _STOPPERS[kind](directory):
                    stopped.append(f"{kind} on port {port}")
            except (SystemExit, RuntimeError, OSError, subprocess.SubprocessError) as exc:
                failed.append(f"{kind} on port {port}: {exc}")
        if any(name.startswith("rabbitmq ") for name in stopped):
            _stop_idle_epmd()
    return stopped, failed


def _stop_idle_epmd() -> None:
    """Erlang starts its port mapper (epmd, port 4369) with the first node and leaves it
    running; once no node is registered with it, it goes too."""
    epmd = shutil.which("epmd") or _first_file(
        sorted(Path("/usr/lib/erlang").glob("erts-*/bin/epmd"))
    )
    if not epmd:
        return
    names = subprocess.run([epmd, "-names"], capture_output=True, text=True, check=False)
    if names.returncode == 0 and " at port " not in names.stdout:
        subprocess.run([epmd, "-kill"], capture_output=True, check=False)


# --- tools the tests and the gateway need ----------------------------------------------


def _binary(name: str, fallback: str) -> str | None:
    return shutil.which(name) or (fallback if os.path.exists(fallback) else None)


def _ensure_debian_package(*, package: str, binary: str, fallback: str, purpose: str) -> str:
    """Path of `binary`, installing Debian's `package` first when it is missing."""
    found = _binary(binary, fallback)
    if found:
        return found
    if not _can_apt():
        raise SystemExit(f"{binary} is missing: install it (Debian: apt-get install -y {package})")
    _apt_install([package], purpose)
    found = _binary(binary, fallback)
    if not found:
        raise SystemExit(f"{binary} still missing after apt-get install {package}")
    return found


def ensure_nginx() -> str:
    """Path of nginx, installing Debian's nginx-light first when it is missing."""
    return _ensure_debian_package(
        package="nginx-light", binary="nginx", fallback="/usr/sbin/nginx", purpose="the gateway"
    )


def ensure_chromium() -> str:
    """Path of Debian's Chromium for the browser tests. Playwright drives this binary;
    its own browser download cannot work here and is never used."""
    return _ensure_debian_package(
        package="chromium",
        binary="chromium",
        fallback="/usr/bin/chromium",
        purpose="the browser tests",
    )
