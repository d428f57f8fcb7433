"""`make up` on a machine where no backing server answers: it starts PostgreSQL, RabbitMQ
and Redis of its own in user space, on the hosts, ports, users and passwords the URLs name;
a purchase goes through the gateway; Ctrl-C leaves the servers; `make down` stops them."""

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import psycopg
import pytest
import redis
import requests
from amqp.exceptions import AccessRefused
from kombu import Connection

from shared_lib.testing.processes import free_port
from shared_lib.testing.waiting import wait_for
from tests.system import first_answer
from ticketing_devtools import backing
from ticketing_devtools.backing import is_listening
from ticketing_devtools.catalog import REPO_ROOT

START_TIMEOUT_SECONDS = 300


def free_amqp_port() -> int:
    """A free port whose Erlang distribution port (port + 20000) is free too."""
    for _ in range(50):
        port = free_port()
        if port + 20000 < 65536:
            with socket.socket() as probe:
                try:
                    probe.bind(("127.0.0.1", port + 20000))
                except OSError:
                    continue
            return port
    raise AssertionError("no free AMQP port pair")


def processes_mentioning(text: str) -> list[str]:
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                line = cmdline.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in line:
            found.append(f"{pid}: {line[:200]}")
    return found


def purchase(gateway: str) -> dict:
    seller, buyer = requests.Session(), requests.Session()
    for session, name in ((seller, "seller"), (buyer, "buyer")):
        answer = session.post(
            f"{gateway}/api/users/signup",
            json={"email": f"{name}@example.com", "password": "a-long-secret"},
            timeout=30,
        )
        assert answer.status_code == 201, answer.text
    ticket = seller.post(f"{gateway}/api/tickets", json={"title": "Gig", "price": 20}, timeout=10)
    assert ticket.status_code == 201, ticket.text
    # A 404 while ticket.created is still on its way to orders_svc.
    order = first_answer(
        lambda: buyer.post(
            f"{gateway}/api/orders", json={"ticketId": ticket.json()["id"]}, timeout=10
        ),
        timeout=30,
    )
    assert order.status_code == 201, order.text
    order_id = order.json()["id"]
    # A 404 while order.created is still on its way to payments_svc.
    payment = first_answer(
        lambda: buyer.post(
            f"{gateway}/api/payments",
            json={"orderId": order_id, "token": "pm_card_visa"},
            timeout=30,
        ),
        timeout=30,
    )
    assert payment.status_code == 201, payment.text

    def completed() -> dict | None:
        state = buyer.get(f"{gateway}/api/orders/{order_id}", timeout=10).json()
        return state if state["status"] == "complete" else None

    return wait_for(completed, timeout=30, what="the order to complete")


def test_make_up_starts_its_own_servers_where_none_answers_and_make_down_stops_them(tmp_path):
    missing = [kind for kind, found in backing._FINDERS.items() if not found()]
    if missing and not backing._can_apt():
        pytest.skip(f"the {', '.join(missing)} server packages are not installed")
    password = secrets.token_hex(12)
    pg, amqp, redis_port, gateway_port = free_port(), free_amqp_port(), free_port(), free_port()
    backing_dir = tmp_path / "backing"
    env = {
        **{name: value for name, value in os.environ.items() if name != "RABBITMQCTL"},
        "BACKING_DIR": str(backing_dir),
        "PG_ADMIN_URL": f"postgresql://ticketing_admin:{password}@127.0.0.1:{pg}/postgres",
        "RABBITMQ_URL": f"amqp://ticketing_admin:{password}@127.0.0.1:{amqp}//",
        "REDIS_URL": f"redis://:{password}@127.0.0.1:{redis_port}/0",
        "GATEWAY_PORT": str(gateway_port),
        "TICKETING_DB_PREFIX": "ticketing",
    }
    ports = {"PostgreSQL": pg, "RabbitMQ": amqp, "Erlang distribution": amqp + 20000}
    ports["Redis"] = redis_port
    assert not [name for name, port in ports.items() if is_listening("127.0.0.1", port)]

    up = subprocess.Popen(
        [sys.executable, "-m", "ticketing_devtools.cli", "up"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    output: list[str] = []
    # Reading make up's output blocks; a hang must fail the test, not stall the run.
    watchdog = threading.Timer(START_TIMEOUT_SECONDS, os.killpg, (up.pid, signal.SIGKILL))
    watchdog.start()
    try:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        for line in up.stdout:
            output.append(line)
            if f"Ready: http://127.0.0.1:{gateway_port}" in line:
                break
            assert time.monotonic() < deadline, "make up did not get ready in time"
        else:
            pytest.fail("make up exited before it was ready:\n" + "".join(output[-60:]))
        watchdog.cancel()
        started = "".join(output)
        for name, port in (("PostgreSQL", pg), ("RabbitMQ", amqp), ("Redis", redis_port)):
            said = f"nothing answers at 127.0.0.1:{port}: starting {name} in {backing_dir}"
            assert said in started

        assert purchase(f"http://127.0.0.1:{gateway_port}")["status"] == "complete"

        # The servers ask for the URLs' passwords: nobody gets in without them.
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(
                f"postgresql://ticketing_admin:wrong@127.0.0.1:{pg}/postgres", connect_timeout=5
            )
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=redis_port, password="wrong").ping()
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=redis_port).ping()
        with pytest.raises(AccessRefused):
            Connection(f"amqp://guest:guest@127.0.0.1:{amqp}//").connect()
    finally:
        watchdog.cancel()
        up.send_signal(signal.SIGINT)  # what Ctrl-C sends
        try:
            rest, _ = up.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(up.pid, signal.SIGKILL)
            rest = ""
        output.append(rest)
        # Ctrl-C stopped the application and left the servers for the next make up.
        still_up = {name: is_listening("127.0.0.1", port) for name, port in ports.items()}
        down = subprocess.run(
            [sys.executable, "-m", "ticketing_devtools.cli", "down"],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
    assert up.returncode == 0, "".join(output[-40:])
    assert still_up == dict.fromkeys(ports, True)
    assert down.returncode == 0, down.stderr
    assert down.stdout == (
        f"Stopped postgresql on port {pg}, rabbitmq on port {amqp}, redis on port {redis_port}\n"
    )
    assert [name for name, port in ports.items() if is_listening("127.0.0.1", port)] == []
    assert processes_mentioning(str(backing_dir)) == []
    assert processes_mentioning(f"-p {pg} ") == []  # PostgreSQL's own command line
    assert processes_mentioning(f"ticketing{amqp}@localhost") == []
    assert not is_listening("127.0.0.1", gateway_port)


@pytest.fixture(autouse=True)
def _remove_cluster_data_kept_outside(tmp_path):
    """As root, PostgreSQL's data lives outside the backing directory, behind a link."""
    yield
    for link in (tmp_path / "backing").glob("*"):
        if link.is_symlink():
            shutil.rmtree(link.resolve(), ignore_errors=True)
