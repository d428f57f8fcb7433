"""ticketing_devtools.localstripe: each instance its own ledger, kept across a clean stop."""

import pickle
import subprocess
from http.server import BaseHTTPRequestHandler

import pytest
import requests
import stripe

from shared_lib.testing.processes import ServerThread, free_port
from shared_lib.testing.waiting import wait_for
from ticketing_devtools.localstripe import STRIPE_JS, command, running

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


def intents_with(api_base: str, key: str, value: str) -> list[str]:
    found = requests.get(
        f"{api_base}/v1/payment_intents/search",
        params={"query": f"metadata['{key}']:'{value}'"},
        auth=KEY,
        timeout=10,
    )
    return [intent["id"] for intent in found.json()["data"]]


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


def test_stripes_test_payment_methods_charge_as_stripes_do(tmp_path):
    with running(tmp_path / "stripe.pickle") as api_base:
        outcomes = {}
        for name in (
            "pm_card_visa",
            "pm_card_mastercard",
            "pm_card_chargeDeclined",
            "pm_card_chargeDeclinedInsufficientFunds",
        ):
            paid = post(
                api_base,
                "/v1/payment_intents",
                amount=800,
                currency="usd",
                payment_method=name,
                confirm="true",
            )
            error = paid.json().get("error", {})
            outcomes[name] = (paid.status_code, paid.json().get("status"), error.get("code"))
        made = post(
            api_base, "/v1/payment_intents", amount=5, currency="usd", payment_method="pm_card_visa"
        ).json()
        retrieved = requests.get(
            f"{api_base}/v1/payment_methods/pm_card_threeDSecure2Required", auth=KEY, timeout=10
        )

    assert outcomes == {
        "pm_card_visa": (200, "succeeded", None),
        "pm_card_mastercard": (200, "succeeded", None),
        "pm_card_chargeDeclined": (402, None, "card_declined"),
        "pm_card_chargeDeclinedInsufficientFunds": (402, None, "card_declined"),
    }
    # As at Stripe, the intent names the PaymentMethod made of the test card, not the name.
    assert made["payment_method"].startswith("pm_")
    assert made["payment_method"] != "pm_card_visa"
    assert retrieved.status_code == 200
    assert retrieved.json()["id"].startswith("pm_")
    assert retrieved.json()["card"]["last4"] == "3220"


def authenticate(api_base: str, intent: dict, *, success: bool) -> requests.Response:
    # As the Stripe.js stand-in calls it from the page: JSON, the publishable key.
    return requests.post(
        f"{api_base}/v1/payment_intents/{intent['id']}/_authenticate",
        params={"success": "true" if success else "false"},
        json={"key": "pk_test_local", "client_secret": intent["client_secret"]},
        timeout=10,
    )


def intent_requiring_action(api_base: str, payment_method: str) -> dict:
    created = post(
        api_base, "/v1/payment_intents", amount=900, currency="usd", payment_method=payment_method
    ).json()
    confirmed = post(api_base, f"/v1/payment_intents/{created['id']}/confirm")
    assert confirmed.status_code == 200, confirmed.text
    return confirmed.json()


def test_a_3d_secure_card_requires_action_until_authenticated(tmp_path):
    with running(tmp_path / "stripe.pickle") as api_base:
        passed = intent_requiring_action(api_base, "pm_card_threeDSecure2Required")
        wrong_secret = authenticate(api_base, {**passed, "client_secret": "x"}, success=True)
        authenticated = authenticate(api_base, passed, success=True)
        failed = intent_requiring_action(api_base, "pm_card_authenticationRequired")
        not_authenticated = authenticate(api_base, failed, success=False)

    assert passed["status"] == "requires_action"
    assert passed["next_action"]["type"] == "use_stripe_sdk"
    assert passed["client_secret"].startswith(f"{passed['id']}_secret_")
    assert failed["status"] == "requires_action"
    assert wrong_secret.status_code == 401
    assert authenticated.status_code == 200
    assert authenticated.json()["status"] == "succeeded"
    assert authenticated.json()["next_action"] is None
    assert not_authenticated.status_code == 200
    assert not_authenticated.json()["status"] == "requires_payment_method"
    assert not_authenticated.json()["last_payment_error"]["code"] == (
        "payment_intent_authentication_failure"
    )


WEBHOOK_SECRET = "whsec_test_local"


class WebhookReceiver(ServerThread):
    """What a webhook endpoint receives: (body, Stripe-Signature header) per POST."""

    def __init__(self) -> None:
        self.received: list[tuple[bytes, str]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.received.append((body, self.headers.get("Stripe-Signature", "")))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        super().__init__(Handler, name="webhook-receiver")

    def wait_for(self, count: int) -> list[stripe.Event]:
        """The first `count` events, each verified as the SDK verifies Stripe's."""
        wait_for(lambda: len(self.received) >= count, timeout=20, what=f"{count} webhooks")
        return [
            stripe.Webhook.construct_event(body, header, WEBHOOK_SECRET, tolerance=300)
            for body, header in self.received[:count]
        ]


def test_events_are_posted_to_the_webhook_signed_as_stripe_signs_them(tmp_path):
    with WebhookReceiver() as receiver:
        with running(
            tmp_path / "stripe.pickle",
            webhook_url=f"{receiver.url}/stripe/webhook",
            webhook_secret=WEBHOOK_SECRET,
        ) as api_base:
            # Each posted a second after it happens: waited for, so they come in order.
            paid = charge(api_base, 1300)
            receiver.wait_for(1)
            refund = post(api_base, "/v1/refunds", payment_intent=paid).json()
            receiver.wait_for(2)
            post(
                api_base,
                "/v1/payment_intents",
                amount=1400,
                currency="usd",
                payment_method="pm_card_chargeDeclined",
                confirm="true",
                **{"metadata[case]": "declined"},
            )
            receiver.wait_for(3)
            [declined] = intents_with(api_base, "case", "declined")
            unauthenticated = intent_requiring_action(api_base, "pm_card_threeDSecure2Required")
            authenticate(api_base, unauthenticated, success=False)
            events = receiver.wait_for(4)
        body, header = receiver.received[0]

    assert [(e.type, e.data.object.id) for e in events] == [
        ("payment_intent.succeeded", paid),
        ("charge.refunded", refund["charge"]),
        ("payment_intent.payment_failed", declined),
        ("payment_intent.payment_failed", unauthenticated["id"]),
    ]
    refunded = events[1].data.object
    assert (refunded.payment_intent, refunded.refunded, refunded.amount_refunded) == (
        paid,
        True,
        1300,
    )
    assert [r.id for r in refunded.refunds.data] == [refund["id"]]
    assert events[2].data.object.last_payment_error.code == "card_declined"
    assert events[3].data.object.last_payment_error.code == "payment_intent_authentication_failure"
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(body, header, "whsec_another", tolerance=300)


def test_the_stripe_js_stand_in_creates_payment_methods_from_the_card_typed(tmp_path):
    with running(tmp_path / "stripe.pickle") as api_base:
        js = requests.get(f"{api_base}/js.stripe.com/v3/", timeout=10)
        # What the stand-in's createPaymentMethod sends for a card typed into its inputs
        # (MM, YY as "20" + YY, CVC, postal code): the publishable key, no secret one.
        made = {}
        for number in ("4242424242424242", "4000000000000002"):
            made[number] = requests.post(
                f"{api_base}/v1/payment_methods",
                data={
                    "type": "card",
                    "card[number]": number,
                    "card[exp_month]": "04",
                    "card[exp_year]": "2034",
                    "card[cvc]": "321",
                    "billing_details[address][postal_code]": "75001",
                    "key": "pk_test_local",
                    "payment_user_agent": "localstripe",
                },
                timeout=10,
            )
        keyless = requests.post(
            f"{api_base}/v1/payment_methods",
            data={"type": "card", "card[number]": "4242424242424242"},
            timeout=10,
        )
        declined = post(
            api_base,
            "/v1/payment_intents",
            amount=600,
            currency="usd",
            payment_method=made["4000000000000002"].json()["id"],
            confirm="true",
        )

    assert js.status_code == 200
    assert js.headers["Content-Type"].startswith("application/javascript")
    assert js.text == STRIPE_JS.read_text()
    assert "createPaymentMethod: async () => {}" not in js.text  # upstream's stub
    assert "createPaymentMethod: async (typeOrData, cardElement, moreData) =>" in js.text
    assert "`${LOCALSTRIPE_BASE_API}/v1/payment_methods`" in js.text
    for number, method in made.items():
        assert method.status_code == 200, method.text
        card = method.json()["card"]
        assert (card["last4"], card["exp_month"], card["exp_year"]) == (number[-4:], 4, 2034)
        assert method.json()["billing_details"] == {"address": {"postal_code": "75001"}}
    assert keyless.status_code == 401
    # A card declined on charge is still a PaymentMethod: it declines at confirm.
    assert declined.status_code == 402
    assert declined.json()["error"]["code"] == "card_declined"


def test_a_webhook_url_without_its_secret_is_refused(tmp_path):
    with pytest.raises(ValueError, match="give both or neither"):
        command(tmp_path / "stripe.pickle", 8420, webhook_url="http://127.0.0.1:1/hook")
    with pytest.raises(ValueError, match="give both or neither"):
        command(tmp_path / "stripe.pickle", 8420, webhook_secret=WEBHOOK_SECRET)
    started = subprocess.run(
        [*command(tmp_path / "stripe.pickle", free_port()), "--webhook-secret", WEBHOOK_SECRET],
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert started.returncode == 2
    assert started.stderr.splitlines()[-1].endswith(
        "error: --webhook-url and --webhook-secret go together: give both or neither"
    )
