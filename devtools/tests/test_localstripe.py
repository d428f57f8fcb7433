"""ticketing_devtools.localstripe: each instance its own ledger, kept across a clean stop."""

import pickle

import requests

from tests.system import wait_for
from ticketing_devtools.localstripe import running

KEY = ("sk_test_local", "")


def charge(api_base: str, amount: int) -> str:
    response = requests.post(
        f"{api_base}/v1/payment_intents",
        data={
            "amount": amount,
            "currency": "usd",
            "payment_method": "pm_card_visa",
            "payment_method_types[]": "card",
            "confirm": "true",
        },
        auth=KEY,
        timeout=10,
    )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "succeeded"
    return response.json()["id"]


def intents(api_base: str) -> set[str]:
    response = requests.get(f"{api_base}/v1/payment_intents?limit=100", auth=KEY, timeout=10)
    assert response.status_code == 200
    return {intent["id"] for intent in response.json()["data"]}


def test_charges_made_just_before_a_clean_stop_are_there_after_a_restart(tmp_path):
    store = tmp_path / "stripe.pickle"
    with running(store) as api_base:
        # Stopped right after the last charge: before the batched write was due.
        made = {charge(api_base, 1000 + n) for n in range(3)}

    with running(store, from_scratch=False) as api_base:
        assert intents(api_base) == made


def test_from_scratch_ignores_what_the_store_holds(tmp_path):
    store = tmp_path / "stripe.pickle"
    with running(store) as api_base:
        charge(api_base, 500)

    with running(store, from_scratch=True) as api_base:
        assert intents(api_base) == set()


def test_a_running_instance_writes_its_store_without_being_stopped(tmp_path):
    store = tmp_path / "stripe.pickle"
    with running(store) as api_base:
        made = charge(api_base, 700)

        def on_disk():
            if not store.exists():
                return False
            with store.open("rb") as f:
                return f"payment_intent:{made}" in pickle.load(f)  # noqa: S301 (our own file)

        assert wait_for(on_disk, timeout=10)
        assert not store.with_suffix(".partial").exists()


def test_two_instances_never_share_a_ledger(tmp_path):
    with running(tmp_path / "a.pickle") as a, running(tmp_path / "b.pickle") as b:
        made = charge(a, 900)

        assert intents(a) == {made}
        assert intents(b) == set()
