"""The whole system on this machine: every service's web process behind the nginx gateway.

    with Stack(gateway_port=0, db_prefix="ticketing_systest") as stack:
        requests.post(f"{stack.url}/api/users/signup", json={...})
    # `make up` runs the same Stack in the foreground with the dev databases.

Start-up: dev secrets, each service's role and database, migrations, static files, one
gunicorn per service on a free port (waited on through /readyz), then the gateway.

Unless STRIPE_API_BASE names another Stripe, the stack runs a localstripe of its own: it
posts signed events to payments_svc's webhook through the gateway, and the gateway serves
it to the browser under /_stripe/, so the web client's payment page is Stripe Elements.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from email.message import EmailMessage
from pathlib import Path
from typing import IO

from shared_lib.testing.processes import celery_worker_command, free_port, gunicorn_command
from shared_lib.testing.rabbitmq import ensure_bus_users
from ticketing_devtools import gateway, localstripe
from ticketing_devtools.backing import admin_url, ensure_backing_servers, ensure_nginx, rabbitmq_url
from ticketing_devtools.catalog import (
    DEFAULT_DB_PREFIX,
    DEFAULT_GATEWAY_PORT,
    REPO_ROOT,
    SERVICES,
    STACK_FILE,
    DjangoService,
    stack_run_dir,
)
from ticketing_devtools.devkeys import DevSecrets, ensure_dev_secrets
from ticketing_devtools.environment import LOCAL_PUBLISHABLE_KEY, service_broker_url, service_env
from ticketing_devtools.mailcatcher import read_mail
from ticketing_devtools.provision import ensure_database
from ticketing_devtools.staticfiles import collect_static
from ticketing_devtools.supervisor import Supervisor

# Two workers per service: requests overlap locally without crowding two cores.
LOCAL_WEB_WORKERS = "2"
# Everything local is on 127.0.0.1, browsers included; the web client calls the gateway
# from a loopback address of its own, so the gateway can believe the browser address it
# forwards (for per-IP rate limits) and nobody else's, as it would a pod's IP.
CLIENT_SOURCE_ADDRESS = "127.0.0.2"
# payments_svc's Stripe webhook endpoint (under its /api/payments route).
STRIPE_WEBHOOK_PATH = "/api/payments/webhooks/stripe"
# localstripe's Stripe.js stand-in (/js.stripe.com/v3/) through the gateway: relative,
# so the browser loads it from the page's own origin, and the script calls the fake's API
# under the same prefix (/_stripe/v1/...).
LOCAL_STRIPE_JS_URL = gateway.LOCALSTRIPE_PREFIX + localstripe.STRIPE_JS_PATH.lstrip("/")


def code_roots(service: DjangoService) -> tuple[Path, ...]:
    """Where the code a service's processes import lives: a change there restarts them
    under `make up` (Supervisor.reload_on_change)."""
    return (service.directory, REPO_ROOT / "shared_lib")


def prepare(*, db_prefix: str = DEFAULT_DB_PREFIX, output: IO[str] | None = None) -> DevSecrets:
    """Everything before a process starts: secrets, databases, migrations, static files.

    The commands' output goes to `output` (the stack's log) or, without one, to ours."""
    import subprocess

    ensure_backing_servers()
    secrets = ensure_dev_secrets()
    for service in SERVICES:
        env = service_env(service, secrets, db_prefix=db_prefix)
        commands = []
        if service.has_database:
            ensure_database(
                admin_url(),
                database=service.database(db_prefix),
                role=service.database(),
                password=secrets.db_password(service.name),
            )
            commands.append(["migrate", "--noinput"])
        if service.web:
            collect_static(service.directory, env, output=output)
        for command in commands:
            subprocess.run(
                [sys.executable, "manage.py", *command],
                cwd=service.directory,
                env=env,
                check=True,
                stdout=output,
                stderr=subprocess.STDOUT if output else None,
            )
    return secrets


class Stack:
    def __init__(
        self,
        *,
        gateway_port: int = DEFAULT_GATEWAY_PORT,
        db_prefix: str = DEFAULT_DB_PREFIX,
        log: IO[str] | None = None,
        run_dir: Path | None = None,
        extra_env: dict[str, str] | None = None,
        env_overrides: dict[str, dict[str, str]] | None = None,
    ) -> None:
        self.gateway_port = gateway_port or free_port()
        self.db_prefix = db_prefix
        self.supervisor = Supervisor(log=log)
        self.run_dir = run_dir or stack_run_dir(db_prefix, self.gateway_port)
        self.service_ports: dict[str, int] = {}
        # What each web service's /readyz checked when it came up: {"auth": {"database": "ok"}}
        self.readiness: dict[str, dict[str, str]] = {}
        # Each worker process's metrics port, kept across restarts so a scrape target
        # stays put; free ports chosen here, so two workers never share one.
        self.metrics_ports: dict[str, int] = {}
        # The localstripe this stack runs itself (None: none, STRIPE_API_BASE names one).
        self.localstripe_port: int | None = None
        # The mail catcher this stack runs itself (None: none, EMAIL_HOST names a server).
        self.mail_port: int | None = None
        self._log = log
        self.extra_env = extra_env or {}
        # Per service, over everything else: e.g. orders' DATABASE_URL through a relay
        # the fault tests can cut. Set-up (migrations) still uses the direct values.
        self.env_overrides = env_overrides or {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    @property
    def stripe_webhook_url(self) -> str:
        """Where the stack's localstripe posts its events: payments_svc, via the gateway."""
        return f"{self.url}{STRIPE_WEBHOOK_PATH}"

    def service_url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.service_ports[name]}"

    def metrics_url(self, process: str) -> str:
        """A worker's /metrics (process: "tickets-worker"); web services serve theirs
        at service_url(name) + "/metrics"."""
        return f"http://127.0.0.1:{self.metrics_ports[process]}/metrics"

    def describe(self) -> dict[str, object]:
        """What `ticketing-dev status` needs to find this system (written to STACK_FILE)."""
        description: dict[str, object] = {
            "gateway": self.url,
            "db_prefix": self.db_prefix,
            "rabbitmq_url": self.broker_url,
            "services": {name: self.service_url(name) for name in self.service_ports},
            "workers": {name: self.metrics_url(name) for name in self.metrics_ports},
        }
        if self.mail_port is not None:
            description["mail"] = {
                "smtp": f"127.0.0.1:{self.mail_port}",
                "directory": str(self.mail_dir),
            }
        if self.localstripe_port is not None:
            description["localstripe"] = {
                "api": f"http://127.0.0.1:{self.localstripe_port}",
                "webhook_url": self.stripe_webhook_url,
            }
        return description

    @property
    def description_file(self) -> Path:
        return self.run_dir / STACK_FILE

    def _env(self, service: DjangoService, secrets: DevSecrets) -> dict[str, str]:
        env = {
            **service_env(service, secrets, db_prefix=self.db_prefix),
            **self.extra_env,
            **self.env_overrides.get(service.name, {}),
        }
        if service.events:
            # Whatever broker address it was given, it connects as its own user.
            env["RABBITMQ_URL"] = service_broker_url(env["RABBITMQ_URL"], service, secrets)
        if service.loads_stripe_js and self.localstripe_port is not None:
            # Stripe Elements against the stack's own localstripe, unless the caller says
            # otherwise (STRIPE_PUBLISHABLE_KEY="" brings back the test-card choice).
            env.setdefault("STRIPE_PUBLISHABLE_KEY", LOCAL_PUBLISHABLE_KEY)
            env.setdefault("STRIPE_JS_URL", LOCAL_STRIPE_JS_URL)
        return env

    @property
    def broker_url(self) -> str:
        """The system's broker and vhost as the admin user (what `status` reads with)."""
        return self.extra_env.get("RABBITMQ_URL") or rabbitmq_url()

    def env_for(self, name: str, secrets: DevSecrets | None = None) -> dict[str, str]:
        """The environment a service's processes run with (for manage.py against it)."""
        target = next(s for s in SERVICES if s.name == name)
        return self._env(target, secrets or ensure_dev_secrets())

    def manage(self, name: str, *args: str) -> str:
        """Run `manage.py <args>` of service `name` against this stack; its output.
        RuntimeError with its stderr when it fails."""
        target = next(s for s in SERVICES if s.name == name)
        done = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=target.directory,
            env=self.env_for(name),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} ({name}): {done.stderr}")
        return done.stdout

    def _start_web(self, service: DjangoService, secrets: DevSecrets) -> None:
        port = free_port()
        self.service_ports[service.name] = port
        env = self._env(service, secrets)
        env["WEB_CONCURRENCY"] = env.get("WEB_CONCURRENCY", LOCAL_WEB_WORKERS)
        if service.calls_api:
            env["API_BASE_URL"] = self.url
            env["API_SOURCE_ADDRESS"] = CLIENT_SOURCE_ADDRESS
        self.supervisor.start(
            f"{service.name}-web",
            gunicorn_command(
                f"{service.project}.wsgi", port=port, config_module=service.gunicorn_conf
            ),
            cwd=service.directory,
            env=env,
            reload_on=code_roots(service),
        )

    def heartbeat_file(self, service: DjangoService, process: str = "") -> Path:
        return self.run_dir / f"{process or service.name + '-worker'}.alive"

    def _start_worker(self, service: DjangoService, secrets: DevSecrets, process: str = "") -> None:
        process = process or f"{service.name}-worker"
        env = self._env(service, secrets)
        env["WORKER_HEARTBEAT_FILE"] = str(self.heartbeat_file(service, process))
        env["METRICS_PORT"] = str(self.metrics_ports.setdefault(process, free_port()))
        env["METRICS_ADDRESS"] = "127.0.0.1"
        self.heartbeat_file(service, process).unlink(missing_ok=True)
        self.supervisor.start(
            process,
            celery_worker_command(
                service.project,
                hostname=f"{process}@%h",
                pool=service.worker_pool,  # see catalog.SOLO_POOL / THREAD_POOL
            ),
            cwd=service.directory,
            env=env,
            reload_on=code_roots(service),
        )

    def restart_worker(self, name: str, *, kill: bool = True, process: str = "") -> None:
        """Kill a service's worker outright (no shutdown) and start a fresh one."""
        target = next(s for s in SERVICES if s.name == name)
        process = process or f"{name}-worker"
        if kill:
            self.supervisor.kill(process)
        self._start_worker(target, ensure_dev_secrets(), process)
        self.supervisor.wait_file(process, self.heartbeat_file(target, process))

    def add_worker(self, name: str) -> str:
        """Start one more worker of a service (its queues take competing consumers);
        returns the new process's name."""
        taken = {child.name for child in self.supervisor.children}
        number = 2
        while f"{name}-worker-{number}" in taken:
            number += 1
        process = f"{name}-worker-{number}"
        self.restart_worker(name, kill=False, process=process)
        return process

    def localstripe_command(self, port: int, secrets: DevSecrets) -> list[str]:
        """How the stack runs its localstripe on `port`: a store in the run dir, every
        event posted to payments_svc's webhook, signed with the secret payments_svc
        verifies with (the dev secret, or one the caller set)."""
        payments = next(s for s in SERVICES if s.uses_stripe)
        return localstripe.command(
            self.run_dir / "localstripe.pickle",
            port,
            webhook_url=self.stripe_webhook_url,
            webhook_secret=self._env(payments, secrets)["STRIPE_WEBHOOK_SECRET"],
        )

    def _start_localstripe(self, secrets: DevSecrets) -> None:
        port = free_port()
        self.localstripe_port = port
        self.extra_env.setdefault("STRIPE_API_BASE", f"http://127.0.0.1:{port}")
        self.supervisor.start(
            "localstripe",
            self.localstripe_command(port, secrets),
            cwd=self.run_dir,
            env=dict(os.environ),
        )
        self.supervisor.wait_tcp("localstripe", "127.0.0.1", port)

    @property
    def mail_dir(self) -> Path:
        """Where the stack's mail catcher keeps what the services send (<n>-<time>.eml)."""
        return self.run_dir / "mail"

    def mail(self) -> list[EmailMessage]:
        """Every email the services sent so far, oldest first."""
        return read_mail(self.mail_dir)

    def _start_mailcatcher(self) -> None:
        port = free_port()
        self.mail_port = port
        self.extra_env.setdefault("EMAIL_HOST", "127.0.0.1")
        self.extra_env.setdefault("EMAIL_PORT", str(port))
        self.extra_env.setdefault("SITE_URL", self.url)
        self.supervisor.start(
            "mail",
            [sys.executable, "-m", "ticketing_devtools.mailcatcher", "--port", str(port),
             "--dir", str(self.mail_dir)],
            cwd=self.run_dir,
            env=dict(os.environ),
        )  # fmt: skip
        self.supervisor.wait_tcp("mail", "127.0.0.1", port)

    def write_gateway_config(self) -> Path:
        """The gateway's nginx.conf in the run dir, for the web services started so far
        (and the stack's localstripe, under /_stripe/); returns its path."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        return gateway.write_config(
            gateway.load_routes(),
            upstreams={name: f"127.0.0.1:{port}" for name, port in self.service_ports.items()},
            listen=f"127.0.0.1:{self.gateway_port}",
            run_dir=self.run_dir,
            trusted_forwarders=[f"{CLIENT_SOURCE_ADDRESS}/32"],
            localstripe=(
                None if self.localstripe_port is None else f"127.0.0.1:{self.localstripe_port}"
            ),
        )

    def start(self) -> Stack:
        nginx = ensure_nginx()
        secrets = prepare(db_prefix=self.db_prefix, output=self._log)
        # Each service on the bus its own broker user, with only its own rights.
        ensure_bus_users(self.broker_url, password_of=secrets.broker_password)
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            if any(s.uses_stripe for s in SERVICES) and "STRIPE_API_BASE" not in self.extra_env:
                self._start_localstripe(secrets)
            if "EMAIL_HOST" not in self.extra_env:
                self._start_mailcatcher()
            for service in SERVICES:
                if service.web:
                    self._start_web(service, secrets)
                if service.events:
                    self._start_worker(service, secrets)
            for service in SERVICES:
                if service.events:
                    self.supervisor.wait_file(
                        f"{service.name}-worker", self.heartbeat_file(service)
                    )
                if service.web:
                    ready = self.supervisor.wait_http(
                        f"{service.name}-web", f"{self.service_url(service.name)}/readyz"
                    )
                    self.readiness[service.name] = json.loads(ready).get("checks", {})
            conf = self.write_gateway_config()
            gateway.check_config(conf, self.run_dir, nginx=nginx)
            self.supervisor.start(
                "gateway",
                gateway.nginx_command(conf, self.run_dir, nginx=nginx),
                cwd=self.run_dir,
                env={},
            )
            self.supervisor.wait_http("gateway", f"{self.url}/api/users/currentuser")
            self.description_file.write_text(json.dumps(self.describe(), indent=2) + "\n")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        self.supervisor.stop_all()
        self.description_file.unlink(missing_ok=True)

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
