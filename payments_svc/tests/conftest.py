import socket
import subprocess
import sys
import time

import pytest
import requests

from tests.stripe_http import StripeLedger, StripeProxy


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def localstripe(tmp_path_factory):
    """A real localstripe server (the fake Stripe from PyPI) for the session, over HTTP,
    with a store of its own (ticketing_devtools.localstripe explains why)."""
    port = _free_port()
    store = tmp_path_factory.mktemp("localstripe") / "store.pickle"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ticketing_devtools.localstripe",
            "--store",
            str(store),
            "--port",
            str(port),
            "--from-scratch",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            requests.get(f"{base}/v1/customers", timeout=1, auth=("sk_test_local", ""))
            break
        except requests.ConnectionError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError("localstripe did not start") from None
            time.sleep(0.1)
    yield base
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture(autouse=True)
def _isolated(session_keys, redis_keys, settings, localstripe):
    """Fresh signing keys and rate-limit keys per test; Stripe is the session's localstripe."""
    from payments import gateway

    settings.STRIPE_API_BASE = localstripe
    gateway._client.cache_clear()
    yield
    gateway._client.cache_clear()


@pytest.fixture
def stripe_ledger(localstripe):
    """What localstripe charged and refunded, read over its own HTTP API."""
    return StripeLedger(localstripe)


@pytest.fixture
def stripe_proxy(localstripe, settings):
    """A recording HTTP hop between the SDK and localstripe; faults on request."""
    from payments import gateway

    proxy = StripeProxy(localstripe).start()
    settings.STRIPE_API_BASE = proxy.url
    gateway._client.cache_clear()
    yield proxy
    proxy.stop()
    if proxy.errors:
        raise proxy.errors[0]
