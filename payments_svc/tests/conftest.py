import pytest

from tests.stripe_http import StripeLedger, StripeProxy
from ticketing_devtools.localstripe import running


@pytest.fixture(scope="session")
def localstripe(tmp_path_factory):
    """A real localstripe server (the fake Stripe from PyPI) for the session, over HTTP,
    with a store of its own (ticketing_devtools.localstripe explains why)."""
    with running(tmp_path_factory.mktemp("localstripe") / "store.pickle") as base:
        yield base


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
