"""The backing servers the system needs on this machine, and what to do when one is down.

from ticketing_devtools.backing import require_backing_servers, ensure_nginx
require_backing_servers()   # SystemExit naming each missing server and how to start it
ensure_nginx()              # installs Debian's nginx when it is missing and we are root
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


def require_backing_servers() -> None:
    missing = [s for s in BACKING_SERVERS if not is_listening(s.host, s.port)]
    if missing:
        lines = [
            f"  {s.name} is not answering on {s.host}:{s.port}; start it with:\n"
            f"    {s.start_command}"
            for s in missing
        ]
        raise SystemExit("Backing server(s) missing:\n" + "\n".join(lines))


def nginx_binary() -> str | None:
    return shutil.which("nginx") or (
        "/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None
    )


def ensure_nginx() -> str:
    """Path of nginx, installing Debian's nginx-light first when it is missing."""
    found = nginx_binary()
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise SystemExit("nginx is missing: install it (Debian: apt-get install -y nginx-light)")
    print("Installing nginx (Debian's nginx-light) for the local gateway...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "nginx-light"],
        check=True,
        env=env,
    )
    found = nginx_binary()
    if not found:
        raise SystemExit("nginx still missing after apt-get install nginx-light")
    return found
