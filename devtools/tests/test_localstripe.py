"""ticketing_devtools.localstripe: each instance its own ledger, kept across a clean stop."""

import pickle

import requests

from shared_lib.testing.waiting import wait_for
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


def post(api_base: str, path: str, **data) -> requests.Response:
    return requests.post(f"{api_base}{path}", data=data, auth=KEY, timeout=10)


def test_stripes_test_tokens_make_payment_methods_that_charge_as_stripes_do(tmp_path):
    with running(tmp_path / "stripe.pickle") as api_base:
        outcomes = {}
        for token in ("tok_visa", "tok_mastercard", "tok_chargeDeclined"):
            method = post(api_base, "/v1/payment_methods", type="card", **{"card[token]": token})
            assert method.status_code == 200, method.text
            assert method.json()["id"].startswith("pm_")
            intent = post(
                api_base,
                "/v1/payment_intents",
                amount=700,
                currency="usd",
                payment_method=method.json()["id"],
            ).json()
            confirmed = post(api_base, f"/v1/payment_intents/{intent['id']}/confirm")
            outcomes[token] = (confirmed.status_code, confirmed.json().get("status"))
            if confirmed.status_code != 200:
                assert confirmed.json()["error"]["message"] == "Your card was declined."
                assert confirmed.json()["error"]["code"] == "card_declined"
        unknown = post(api_base, "/v1/payment_methods", type="card", **{"card[token]": "tok_x"})

    assert outcomes == {
        "tok_visa": (200, "succeeded"),
        "tok_mastercard": (200, "succeeded"),
        "tok_chargeDeclined": (402, None),
    }
    assert unknown.status_code == 400
    assert unknown.json()["error"]["message"] == "No such token: 'tok_x'"


def test_a_token_of_its_own_is_single_use(tmp_path):
    with running(tmp_path / "stripe.pickle") as api_base:
        card = {
            "card[number]": "4242424242424242",
            "card[exp_month]": "12",
            "card[exp_year]": "2030",
            "card[cvc]": "123",
        }
        token = post(api_base, "/v1/tokens", **card).json()["id"]
        first = post(api_base, "/v1/payment_methods", type="card", **{"card[token]": token})
        second = post(api_base, "/v1/payment_methods", type="card", **{"card[token]": token})

    assert first.status_code == 200
    assert second.status_code == 400
    assert second.json()["error"]["code"] == "token_already_used"


def test_a_second_refund_is_charge_already_refunded(tmp_path):
    with running(tmp_path / "stripe.pickle") as api_base:
        intent = charge(api_base, 1200)
        first = post(api_base, "/v1/refunds", payment_intent=intent)
        second = post(api_base, "/v1/refunds", payment_intent=intent)
        never_charged = post(
            api_base,
            "/v1/payment_intents",
            amount=5,
            currency="usd",
            payment_method="pm_card_visa",
        ).json()["id"]
        not_refundable = post(api_base, "/v1/refunds", payment_intent=never_charged)

    assert (first.status_code, first.json()["amount"]) == (200, 1200)
    assert second.status_code == 400
    assert second.json()["error"]["code"] == "charge_already_refunded"
    assert not_refundable.status_code == 400
    assert not_refundable.json()["error"]["code"] == "charge_not_refundable"


def test_payment_intents_are_found_by_metadata(tmp_path):
    with running(tmp_path / "stripe.pickle") as api_base:
        made = [
            post(
                api_base,
                "/v1/payment_intents",
                amount=100 + n,
                currency="usd",
                payment_method="pm_card_visa",
                **{"metadata[attemptId]": f"a{n}"},
            ).json()["id"]
            for n in range(3)
        ]
        found = requests.get(
            f"{api_base}/v1/payment_intents/search",
            params={"query": "metadata['attemptId']:'a1'"},
            auth=KEY,
            timeout=10,
        )
        none = requests.get(
            f"{api_base}/v1/payment_intents/search",
            params={"query": "metadata['attemptId']:'zz'"},
            auth=KEY,
            timeout=10,
        )
        retrieved = requests.get(f"{api_base}/v1/payment_intents/{made[1]}", auth=KEY, timeout=10)

    assert found.status_code == 200
    assert found.json()["object"] == "search_result"
    assert [i["id"] for i in found.json()["data"]] == [made[1]]
    assert none.json()["data"] == []
    assert retrieved.json()["id"] == made[1]  # /{id} still answers beside /search
