"""The backing servers the system needs on this machine, and what to do when one is down.

from ticketing_devtools.backing import require_backing_servers, ensure_nginx
require_backing_servers()   # SystemExit naming each missing server and how to start it
ensure_nginx()              # installs Debian's nginx when it is missing and we are root
ensure_chromium()           # likewise Debian's Chromium, for the browser tests
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from dataclasses import dataclass


@dataclass(frozen=True)
class BackingServer:
    name: str
    host: str
    port: int
    start_command: str  # the idempotent start command of this kind of machine


BACKING_SERVERS = (
    BackingServer(
        "PostgreSQL",
        "127.0.0.1",
        5432,
        "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
    ),
    BackingServer("RabbitMQ", "127.0.0.1", 5672, "rabbitmq-server -detached"),
    BackingServer(
        "Redis",
        "127.0.0.1",
        6379,
        'redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" '
        "--appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log",
    ),
)


def is_listening(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def require_backing_servers(servers: tuple[BackingServer, ...] = BACKING_SERVERS) -> None:
    missing = [s for s in servers if not is_listening(s.host, s.port)]
    if missing:
        lines = [
            f"  {s.name} is not answering on {s.host}:{s.port}; start it with:\n"
            f"    {s.start_command}"
            for s in missing
        ]
        raise SystemExit("Backing server(s) missing:\n" + "\n".join(lines))


def _binary(name: str, fallback: str) -> str | None:
    return shutil.which(name) or (fallback if os.path.exists(fallback) else None)


def _ensure_debian_package(*, package: str, binary: str, fallback: str, purpose: str) -> str:
    """Path of `binary`, installing Debian's `package` first when it is missing."""
    found = _binary(binary, fallback)
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise SystemExit(f"{binary} is missing: install it (Debian: apt-get install -y {package})")
    print(f"Installing {package} (Debian's package) for {purpose}...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", package],
        check=True,
        env=env,
    )
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
