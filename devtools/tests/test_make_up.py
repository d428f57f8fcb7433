"""`make up` itself: the command a newcomer runs, started as they would start it, checked
until every health check is green, then stopped with Ctrl-C.

It runs a localstripe of its own, which posts its events to payments_svc's webhook: the
payment page is Stripe Elements, on the Stripe.js stand-in served through the gateway
(/_stripe/)."""

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path

import pytest
import requests

from shared_lib.testing.processes import free_port
from shared_lib.testing.rabbitmq import broker_url, throwaway_vhost
from shared_lib.testing.waiting import wait_for
from tests.system import first_answer
from ticketing_devtools.backing import rabbitmq_url
from ticketing_devtools.catalog import REPO_ROOT, STACK_FILE, WEB_SERVICES, stack_run_dir
from ticketing_devtools.mailcatcher import read_mail
from ticketing_devtools.provision import throwaway_databases

READY_LINE = re.compile(r"\| (\w+) ready at (http://127\.0\.0\.1:\d+)  \((.*)\)$")
START_TIMEOUT_SECONDS = 180
WINDOW_SECONDS = 37


@pytest.fixture
def side_by_side():
    """A database prefix and vhost of its own, so this system never touches the dev one."""
    with (
        throwaway_databases(f"ticketing_uptest_{uuid.uuid4().hex[:8]}") as prefix,
        throwaway_vhost(rabbitmq_url(), "ticketing-uptest") as vhost,
    ):
        yield prefix, broker_url(rabbitmq_url(), vhost=vhost)


def test_make_up_gets_every_health_check_green_and_stops_on_ctrl_c(side_by_side):
    prefix, broker = side_by_side
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "ticketing_devtools.cli", "up"],
        cwd=REPO_ROOT,
        env={
            **os.environ,
            "GATEWAY_PORT": str(port),
            "TICKETING_DB_PREFIX": prefix,
            "RABBITMQ_URL": broker,
            "EXPIRATION_WINDOW_SECONDS": str(WINDOW_SECONDS),
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    output = []
    try:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        ready = {}
        for line in process.stdout:
            output.append(line)
            if match := READY_LINE.search(line.rstrip()):
                ready[match.group(1)] = (match.group(2), match.group(3))
            # The last line `make up` prints once ready (after "Ready: <url>"). Read up
            # to it here: communicate() below reads the pipe itself, so lines this
            # iterator has already buffered would never be seen.
            if "Stripe: localstripe, webhooks to" in line:
                break
            assert time.monotonic() < deadline, "make up did not get ready in time"
        else:
            pytest.fail("make up exited before it was ready:\n" + "".join(output[-60:]))

        # Every web process reported ready, and every check it runs is green now.
        assert set(ready) == {service.name for service in WEB_SERVICES}
        for name, (url, summary) in ready.items():
            answer = requests.get(f"{url}/readyz", timeout=5)
            assert answer.status_code == 200, (name, answer.text)
            checks = answer.json()["checks"]
            assert all(state == "ok" for state in checks.values()), (name, checks)
            assert summary == (", ".join(f"{check} ok" for check in checks) or "no dependencies")
        assert ready["orders"][1] == "database ok"
        assert ready["auth"][1] == "database ok, redis ok"
        assert ready["client"][1] == "no dependencies"

        # One URL: the pages, and the APIs behind them; the environment is honoured.
        gateway = f"http://127.0.0.1:{port}"
        page = requests.get(f"{gateway}/", timeout=10)
        assert page.status_code == 200
        assert "<h1>Tickets for sale</h1>" in page.text
        demo = subprocess.run(
            [sys.executable, "-m", "ticketing_devtools.cli", "demo", "--url", gateway],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert "alice@example.com / demo-tickets-2026" in demo.stdout
        carol = requests.Session()
        signin = carol.post(
            f"{gateway}/api/users/signin",
            json={"email": "carol@example.com", "password": "demo-tickets-2026"},
            timeout=10,
        )
        assert signin.status_code == 200
        tickets = requests.get(f"{gateway}/api/tickets", timeout=10).json()
        assert len(tickets) == 5
        # A 404 while the ticket's event is still on its way to orders_svc.
        order = first_answer(
            lambda: carol.post(
                f"{gateway}/api/orders", json={"ticketId": tickets[0]["id"]}, timeout=10
            )
        )
        assert order.status_code == 201, order.text
        expires = datetime.fromisoformat(order.json()["expiresAt"].replace("Z", "+00:00"))
        window = expires.timestamp() - time.time()
        assert WINDOW_SECONDS - 5 < window <= WINDOW_SECONDS

        # Payments as in production: Stripe Elements on the order page, from the
        # localstripe the stack runs, which posts its events to payments_svc's webhook.
        page = carol.get(f"{gateway}/orders/{order.json()['id']}", timeout=10)
        assert page.status_code == 200
        assert 'data-stripe-key="pk_test_local"' in page.text
        assert 'src="/_stripe/js.stripe.com/v3/"' in page.text
        assert 'id="card-element"' in page.text
        assert "pm_card_visa" not in page.text  # not the test-card choice
        stripe_js = requests.get(f"{gateway}/_stripe/js.stripe.com/v3/", timeout=10)
        assert stripe_js.status_code == 200
        assert stripe_js.headers["Content-Type"].startswith("application/javascript")
        described = json.loads((stack_run_dir(prefix, port) / STACK_FILE).read_text())
        webhook_url = f"{gateway}/api/payments/webhooks/stripe"
        assert described["localstripe"]["webhook_url"] == webhook_url

        # Email goes to the mail catcher it runs: carol's receipt once she has paid.
        paid = first_answer(
            lambda: carol.post(
                f"{gateway}/api/payments",
                json={"orderId": order.json()["id"], "token": "pm_card_visa"},
                timeout=30,
            )
        )
        assert paid.status_code == 201, paid.text
        mail_dir = Path(described["mail"]["directory"])
        receipts = wait_for(
            lambda: [m for m in read_mail(mail_dir) if m["To"] == "carol@example.com"],
            timeout=30,
            what="carol's receipt in the mail catcher",
        )
        assert [m["Subject"] for m in receipts] == [f"Your ticket: {tickets[0]['title']}"]
    finally:
        process.send_signal(signal.SIGINT)  # what Ctrl-C sends
        try:
            rest, _ = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            raise
        output.append(rest)
    assert process.returncode == 0, "".join(output[-40:])
    assert "| stopping..." in "".join(output)
    assert f"Stripe: localstripe, webhooks to {webhook_url}" in "".join(output)
    assert f"Mail: the services' email is kept in {mail_dir}/ (*.eml)" in "".join(output)
    assert f"Ready: http://127.0.0.1:{port}" in "".join(output)
    # Everything it started has stopped: nothing answers on the ports it printed.
    for url, _ in ready.values():
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{url}/healthz", timeout=2)
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/", timeout=2)
