"""The dev secrets made at set-up and the environment each local process gets from them:
no servers, only files under a test's own directory."""

import json
import re
import stat

import pytest

from ticketing_devtools.catalog import SERVICES, service
from ticketing_devtools.devkeys import ensure_dev_secrets
from ticketing_devtools.environment import service_env


@pytest.fixture
def clean_stripe_env(monkeypatch):
    for name in ("STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET"):
        monkeypatch.delenv(name, raising=False)


def test_the_stripe_webhook_secret_is_made_once_and_kept_with_the_other_secrets(tmp_path):
    first = ensure_dev_secrets(tmp_path / "dev")
    again = ensure_dev_secrets(tmp_path / "dev")
    elsewhere = ensure_dev_secrets(tmp_path / "other-checkout")

    assert re.fullmatch(r"whsec_[0-9a-f]{48}", first.stripe_webhook_secret)
    assert again.stripe_webhook_secret == first.stripe_webhook_secret
    assert elsewhere.stripe_webhook_secret != first.stripe_webhook_secret  # random, not fixed
    stored = tmp_path / "dev" / "secrets.json"
    assert json.loads(stored.read_text())["stripe.webhook_secret"] == first.stripe_webhook_secret
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600


def test_a_checkout_made_before_the_webhook_secret_gets_one_and_keeps_the_rest(tmp_path):
    directory = tmp_path / "dev"
    before = ensure_dev_secrets(directory)
    values = dict(before.values)
    del values["stripe.webhook_secret"]
    (directory / "secrets.json").write_text(json.dumps(values))

    after = ensure_dev_secrets(directory)

    assert after.stripe_webhook_secret.startswith("whsec_")
    assert {k: v for k, v in after.values.items() if k != "stripe.webhook_secret"} == values


def test_only_payments_gets_the_webhook_secret(tmp_path, clean_stripe_env):
    secrets = ensure_dev_secrets(tmp_path / "dev")

    given = {s.name: service_env(s, secrets).get("STRIPE_WEBHOOK_SECRET") for s in SERVICES}

    assert given == {s.name: None for s in SERVICES} | {"payments": secrets.stripe_webhook_secret}


def test_an_exported_webhook_secret_wins_for_payments_and_reaches_no_one_else(
    tmp_path, clean_stripe_env, monkeypatch
):
    secrets = ensure_dev_secrets(tmp_path / "dev")
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", "whsec_from_the_dashboard")
    monkeypatch.setenv("STRIPE_SECRET_KEY", "sk_test_from_the_dashboard")

    payments = service_env(service("payments"), secrets)
    others = [service_env(s, secrets) for s in SERVICES if s.name != "payments"]

    assert payments["STRIPE_WEBHOOK_SECRET"] == "whsec_from_the_dashboard"
    assert payments["STRIPE_SECRET_KEY"] == "sk_test_from_the_dashboard"
    for env in others:
        assert "STRIPE_WEBHOOK_SECRET" not in env
        assert "STRIPE_SECRET_KEY" not in env
