"""`ticketing-dev`: the commands behind the Makefile.

ticketing-dev up                # set up and run the whole system on one URL
ticketing-dev down              # stop the backing servers `up` started (if it started any)
ticketing-dev demo              # add demo users and tickets to the running system
ticketing-dev test [SUITE ...]  # set up and run every test suite
ticketing-dev status            # readiness, queue depths, outbox backlog, dead letters
ticketing-dev manage auth createsuperuser

Every command first reads the repository's .env, if there is one (.env.example's format);
variables already exported win over it. An error is one line, never a traceback.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
from functools import partial
from pathlib import Path

import psycopg
import requests

from ticketing_devtools import testrun
from ticketing_devtools.backing import ensure_backing_servers, stop_backing_servers
from ticketing_devtools.catalog import REPO_ROOT, SERVICES, db_prefix, gateway_port, service
from ticketing_devtools.demo import add_demo_data
from ticketing_devtools.devkeys import ensure_dev_secrets
from ticketing_devtools.envfile import EnvFileError, load_env_file
from ticketing_devtools.environment import service_env
from ticketing_devtools.stack import Stack, prepare

ENV_FILE = REPO_ROOT / ".env"  # never committed (.gitignore); .env.example shows the format


def _up(args: argparse.Namespace) -> int:
    # With another prefix (and port, and RABBITMQ_URL vhost) a second system runs beside
    # the first on the same servers; the `make up` test does exactly that.
    stack = Stack(gateway_port=gateway_port(), db_prefix=db_prefix())

    def terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    # Both, explicitly: a shell that starts us in the background hands down SIGINT ignored.
    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGINT, terminate)
    try:
        stack.start()
        reloading = stack.supervisor.reload_on_change()
        say = partial(stack.supervisor.say, "ticketing")
        for name, checks in stack.readiness.items():
            detail = ", ".join(f"{check} {state}" for check, state in checks.items())
            say(f"{name} ready at {stack.service_url(name)}  ({detail or 'no dependencies'})")
        say(f"Ready: {stack.url}  (open it in a browser; Ctrl-C stops everything)")
        say("  demo users and tickets: make demo (in another terminal)")
        say(f"  API docs: {stack.url}/api/tickets/docs/ · admin: {stack.url}/admin/auth/")
        if stack.mail_port is not None:
            say(f"  Mail: the services' email is kept in {stack.mail_dir}/ (*.eml)")
        if stack.localstripe_port is not None:
            say(f"  Stripe: localstripe, webhooks to {stack.stripe_webhook_url}")
        if reloading:
            say("  a changed .py file restarts the processes that run it")
        exited = stack.supervisor.wait_any()
        if exited is None:
            stack.supervisor.say("ticketing", "parent process gone; stopping")
            return 1
        stack.supervisor.say(
            "ticketing", f"{exited.name} exited ({exited.process.returncode}); stopping"
        )
        return 1
    except KeyboardInterrupt:
        stack.supervisor.say("ticketing", "stopping...")
        return 0
    finally:
        stack.stop()


def _demo(args: argparse.Namespace) -> int:
    url = args.url or f"http://127.0.0.1:{gateway_port()}"
    lines = add_demo_data(url)
    print(f"Demo data is in {url}. Sign in with:")
    print("\n".join(lines))
    return 0


def _setup(args: argparse.Namespace) -> int:
    prepare()
    return 0


def _test(args: argparse.Namespace) -> int:
    return testrun.run(args.suites, args.pytest_args)


def _status(args: argparse.Namespace) -> int:
    from ticketing_devtools import status

    services = dict(item.split("=", 1) for item in args.service)
    return status.main(
        stack_file=args.stack_file, vhost=args.vhost, db_prefix=args.db_prefix, services=services
    )


def _down(args: argparse.Namespace) -> int:
    stopped, failed = stop_backing_servers()
    if stopped or not failed:
        print(f"Stopped {', '.join(stopped)}" if stopped else "No server of make up's is running")
    if failed:
        return _fail("down", "could not stop " + "; ".join(failed))
    return 0


def _manage(args: argparse.Namespace) -> int:
    ensure_backing_servers()
    target = service(args.service)
    env = service_env(target, ensure_dev_secrets())
    return subprocess.call([sys.executable, "manage.py", *args.args], cwd=target.directory, env=env)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ticketing-dev", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("up", help="set up and run the whole system").set_defaults(func=_up)
    commands.add_parser("setup", help="secrets, databases, migrations").set_defaults(func=_setup)
    commands.add_parser(
        "down", help="stop the PostgreSQL, RabbitMQ and Redis that up or test started"
    ).set_defaults(func=_down)
    demo = commands.add_parser("demo", help="add demo users and tickets to a running system")
    demo.add_argument("--url", help="the gateway (default: http://127.0.0.1:$GATEWAY_PORT)")
    demo.set_defaults(func=_demo)
    suite_names = [suite.name for suite in testrun.suites()]
    test = commands.add_parser("test", help=f"run test suites: {', '.join(suite_names)}")
    test.add_argument("suites", nargs="*", help="the suites to run (default: every one)")
    test.add_argument("--pytest-args", nargs=argparse.REMAINDER, default=[])
    test.set_defaults(func=_test)
    status = commands.add_parser("status", help="how the running system is doing (exit 1: not)")
    status.add_argument(
        "--stack-file",
        type=Path,
        help="a stack's description (default: the one `make up` writes, from "
        "TICKETING_DB_PREFIX and GATEWAY_PORT)",
    )
    status.add_argument("--vhost", help="RabbitMQ vhost (default: the stack's)")
    status.add_argument("--db-prefix", help="database name prefix (default: the stack's)")
    status.add_argument(
        "--service", action="append", default=[], metavar="NAME=URL", help="a web service's URL"
    )
    status.set_defaults(func=_status)
    service_names = [s.name for s in SERVICES]
    manage = commands.add_parser(
        "manage", help=f"manage.py of one service ({', '.join(service_names)}), with its env"
    )
    manage.add_argument("service", help=f"one of: {', '.join(service_names)}")
    manage.add_argument("args", nargs=argparse.REMAINDER)
    manage.set_defaults(func=_manage)
    args = parser.parse_args(argv)
    if args.command == "test" and (unknown := sorted(set(args.suites) - set(suite_names))):
        test.error(f"unknown suite {', '.join(unknown)}; the suites: {', '.join(suite_names)}")
    if args.command == "manage" and args.service not in service_names:
        manage.error(f"unknown service {args.service}; the services: {', '.join(service_names)}")
    try:
        load_env_file(ENV_FILE)
        return args.func(args)
    except KeyboardInterrupt:
        return 130
    except SystemExit as exc:
        if not isinstance(exc.code, str):
            raise
        return _fail(args.command, exc.code)
    except USER_ERRORS as exc:
        return _fail(args.command, _describe(exc))


# What goes wrong because of the machine or the input, not a bug in devtools: one line
# says what (the command's own output above says more). Anything else keeps its traceback.
USER_ERRORS = (
    EnvFileError,
    OSError,  # a port taken, a file missing
    RuntimeError,  # a process exited or timed out while starting, nginx -t refused the config
    subprocess.SubprocessError,  # a command failed or timed out
    requests.RequestException,
    psycopg.Error,
)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, subprocess.CalledProcessError | subprocess.TimeoutExpired):
        # The program and its first argument only: later ones may carry a secret.
        argv = [exc.cmd] if isinstance(exc.cmd, str) else list(exc.cmd)
        shown = " ".join(
            "python" if arg == sys.executable else Path(str(arg)).name for arg in argv[:2]
        )
        output = exc.stderr or exc.output or ""
        output = output.decode(errors="replace") if isinstance(output, bytes) else output
        said = output.strip().splitlines()
        if isinstance(exc, subprocess.TimeoutExpired):
            return f"`{shown} …` did not finish within {exc.timeout:.0f} s"
        return f"`{shown} …` failed with exit status {exc.returncode}" + (
            f": {said[-1]}" if said else ""
        )
    if isinstance(exc, requests.ConnectionError) and exc.request is not None:
        return f"nothing answers at {exc.request.url}: is the system running (make up)?"
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _fail(command: str, message: str) -> int:
    # argparse's format, so every error of ticketing-dev reads alike.
    print(f"ticketing-dev {command}: error: {message}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
