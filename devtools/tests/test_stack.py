"""The whole local system as `make up` runs it: gunicorn per service behind nginx.

The stack's own localstripe (webhook, gateway route, the client's Stripe.js) is checked
on a Stack that is not started: the suite's stack pays through a relay it is given
(conftest.py), and `make up` itself is test_make_up.py's."""

import pytest
import redis
import requests

from shared_lib.testing.processes import free_port
from tests.system import RATE_LIMIT_PREFIX, SIGNIN_LIMIT
from ticketing_devtools import localstripe
from ticketing_devtools.backing import redis_url
from ticketing_devtools.catalog import SERVICES, WEB_SERVICES
from ticketing_devtools.devkeys import ensure_dev_secrets
from ticketing_devtools.gateway import check_config
from ticketing_devtools.stack import Stack

LOCALSTRIPE_PORT = 4242


def test_a_newcomer_signs_up_through_the_gateway(stack):
    session = requests.Session()

    created = session.post(
        f"{stack.url}/api/users/signup",
        json={"email": "Newcomer@Example.com", "password": "a-long-secret-phrase"},
        timeout=10,
    )
    current = session.get(f"{stack.url}/api/users/currentuser", timeout=10)

    assert created.status_code == 201
    assert created.json()["email"] == "newcomer@example.com"
    cookie = next(c for c in session.cookies if c.name == "session")
    assert cookie.secure is False  # local http; production cookies are Secure
    assert current.status_code == 200
    assert current.json()["currentUser"]["id"] == created.json()["id"]


def test_unknown_and_lookalike_api_paths_are_json_404s(stack):
    for path in ("/api/usersfoo", "/api/users/nope", "/api/nothing"):
        response = requests.get(f"{stack.url}{path}", timeout=10, allow_redirects=False)
        assert response.status_code == 404, path
        assert response.json() == {"errors": [{"message": "Not Found"}]}, path


def test_no_redirect_for_a_missing_trailing_slash(stack):
    response = requests.get(f"{stack.url}/api/users/currentuser", timeout=10, allow_redirects=False)

    assert response.status_code == 200
    assert response.json() == {"currentUser": None}


def test_admin_docs_and_static_files_are_reachable_through_the_gateway(stack):
    login = requests.get(f"{stack.url}/admin/auth/login/", timeout=10)
    docs = requests.get(f"{stack.url}/api/users/docs/", timeout=10)
    css = requests.get(f"{stack.url}/static/auth/admin/css/base.css", timeout=10)

    assert login.status_code == 200
    assert "Ticketing auth admin" in login.text
    assert docs.status_code == 200
    assert css.status_code == 200
    assert css.headers["Content-Type"].startswith("text/css")


@pytest.fixture
def fresh_rate_limits():
    client = redis.Redis.from_url(redis_url())
    keys = list(client.scan_iter(f"{RATE_LIMIT_PREFIX}:*"))
    if keys:
        client.delete(*keys)


def test_a_spoofed_forwarded_address_does_not_escape_the_rate_limit(stack, fresh_rate_limits):
    url = f"{stack.url}/api/users/signin"
    statuses = []
    for index in range(SIGNIN_LIMIT + 2):
        response = requests.post(
            url,
            json={"email": f"spoof{index}@example.com", "password": "a-long-secret-phrase"},
            headers={"X-Forwarded-For": f"203.0.113.{index}"},
            timeout=10,
        )
        statuses.append(response.status_code)

    assert statuses == [400] * SIGNIN_LIMIT + [429, 429]


def test_an_oversized_body_is_refused_at_the_gateway(stack):
    response = requests.post(
        f"{stack.url}/api/users/signin",
        data=b"x" * (1024 * 1024 + 1),
        headers={"Content-Type": "application/json"},
        timeout=10,
    )

    assert response.status_code == 413
    assert response.json() == {"errors": [{"message": "Request body too large"}]}


def test_services_report_ready_directly(stack):
    for service in WEB_SERVICES:
        ready = requests.get(f"{stack.service_url(service.name)}/readyz", timeout=10)
        assert ready.status_code == 200
        assert ready.json()["status"] == "ok"


def test_a_stack_given_another_stripe_serves_no_localstripe(stack):
    response = requests.get(f"{stack.url}/_stripe/js.stripe.com/v3/", timeout=10)

    assert stack.localstripe_port is None
    assert response.status_code == 404  # the web client's page, not a script
    assert "/_stripe" not in (stack.run_dir / "nginx.conf").read_text()
    assert "localstripe" not in stack.describe()


# --- the stack's own localstripe, on a Stack as start() leaves it (nothing runs) ---------


@pytest.fixture
def unstarted(tmp_path, monkeypatch):
    """A Stack once start() has started its localstripe and web services (none runs)."""
    for name in ("STRIPE_PUBLISHABLE_KEY", "STRIPE_JS_URL", "STRIPE_WEBHOOK_SECRET"):
        monkeypatch.delenv(name, raising=False)
    stack = Stack(gateway_port=free_port(), db_prefix="ticketing_unstarted", run_dir=tmp_path)
    stack.service_ports = {s.name: 9001 + i for i, s in enumerate(WEB_SERVICES)}
    stack.localstripe_port = LOCALSTRIPE_PORT
    return stack


@pytest.fixture
def secrets(tmp_path):
    return ensure_dev_secrets(tmp_path / "dev")


def test_the_gateway_serves_the_stacks_localstripe_under_stripe(unstarted):
    conf = unstarted.write_gateway_config()

    check_config(conf, unstarted.run_dir)  # nginx -t
    assert (
        "        location /_stripe/ {\n"
        f"            proxy_pass http://127.0.0.1:{LOCALSTRIPE_PORT}/;\n"
        "        }\n"
    ) in conf.read_text()


def test_without_its_own_localstripe_the_gateway_has_no_stripe_location(unstarted):
    unstarted.localstripe_port = None

    assert "/_stripe" not in unstarted.write_gateway_config().read_text()


def test_localstripe_posts_signed_events_to_payments_webhook_through_the_gateway(
    unstarted, secrets
):
    command = unstarted.localstripe_command(LOCALSTRIPE_PORT, secrets)

    assert command == localstripe.command(
        unstarted.run_dir / "localstripe.pickle",
        LOCALSTRIPE_PORT,
        webhook_url=f"http://127.0.0.1:{unstarted.gateway_port}/api/payments/webhooks/stripe",
        webhook_secret=secrets.stripe_webhook_secret,
    )
    payments = unstarted.env_for("payments", secrets)
    assert payments["STRIPE_WEBHOOK_SECRET"] == secrets.stripe_webhook_secret
    assert unstarted.describe()["localstripe"] == {
        "api": f"http://127.0.0.1:{LOCALSTRIPE_PORT}",
        "webhook_url": f"{unstarted.url}/api/payments/webhooks/stripe",
    }


def test_localstripe_signs_with_the_secret_payments_is_given(unstarted, secrets):
    unstarted.extra_env["STRIPE_WEBHOOK_SECRET"] = "whsec_given"

    command = unstarted.localstripe_command(LOCALSTRIPE_PORT, secrets)

    assert command == localstripe.command(
        unstarted.run_dir / "localstripe.pickle",
        LOCALSTRIPE_PORT,
        webhook_url=unstarted.stripe_webhook_url,
        webhook_secret="whsec_given",
    )
    assert unstarted.env_for("payments", secrets)["STRIPE_WEBHOOK_SECRET"] == "whsec_given"


def test_the_client_loads_the_stand_in_stripe_js_through_the_gateway(unstarted, secrets):
    envs = {s.name: unstarted.env_for(s.name, secrets) for s in SERVICES}

    stripe_js = {
        name: (env.get("STRIPE_PUBLISHABLE_KEY"), env.get("STRIPE_JS_URL"))
        for name, env in envs.items()
    }
    assert stripe_js == {s.name: (None, None) for s in SERVICES} | {
        "client": ("pk_test_local", "/_stripe/js.stripe.com/v3/")
    }


def test_the_callers_stripe_settings_win_over_the_clients_defaults(unstarted, secrets, monkeypatch):
    monkeypatch.setenv("STRIPE_JS_URL", "https://js.stripe.com/v3/")
    unstarted.extra_env["STRIPE_PUBLISHABLE_KEY"] = ""  # StackSettings(env=...): test cards

    client = unstarted.env_for("client", secrets)

    assert (client["STRIPE_PUBLISHABLE_KEY"], client["STRIPE_JS_URL"]) == (
        "",
        "https://js.stripe.com/v3/",
    )


def test_without_its_own_localstripe_the_client_keeps_the_test_cards(unstarted, secrets):
    unstarted.localstripe_port = None

    client = unstarted.env_for("client", secrets)

    assert "STRIPE_PUBLISHABLE_KEY" not in client
    assert "STRIPE_JS_URL" not in client
