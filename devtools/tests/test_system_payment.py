"""Expiry and payment across every service, with the stack's workers and localstripe.

The stack's payment window is EXPIRATION_WINDOW_SECONDS (a few seconds), so these tests
wait out real expiries rather than faking the clock.
"""

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import requests

from shared_lib.testing.waiting import wait_for
from tests.system import (
    EXPIRATION_WINDOW_SECONDS,
    first_answer,
    order,
    orderable,
    sell,
    ticket,
    user,
)


def pay(stack, buyer, order_id, token="pm_card_visa"):
    return buyer.post(
        f"{stack.url}/api/payments", json={"orderId": order_id, "token": token}, timeout=30
    )


def get_order(stack, buyer, order_id):
    return buyer.get(f"{stack.url}/api/orders/{order_id}", timeout=10).json()


def expires_not_before_its_time(stack, buyer, created):
    """Watch the order through its window, then wait for it to be cancelled.

    Every answer that came back before expiresAt must still say "created" (never early). How
    soon after expiresAt it is cancelled is a speed figure, measured by bench/expiry.py.
    """
    expires_at = datetime.fromisoformat(created["expiresAt"])
    while True:
        status = get_order(stack, buyer, created["id"])["status"]
        if datetime.now(UTC) >= expires_at:
            break
        assert status == "created"
        time.sleep(0.2)
    wait_for(
        lambda: get_order(stack, buyer, created["id"])["status"] == "cancelled",
        timeout=EXPIRATION_WINDOW_SECONDS + 10,
    )


def logged(stack, message, order_id):
    """A process of the stack has logged `message` about this order."""
    return any(
        message in line and f"order_id={order_id}" in line
        for line in stack.log_path.read_text(errors="replace").splitlines()
    )


def payable(stack, buyer, order_id, token="pm_card_visa"):
    """Pay as soon as payments_svc has the order's replica (404 until then)."""
    return first_answer(lambda: pay(stack, buyer, order_id, token))


def intents_for(stack, order_id):
    """What localstripe charged for this order (its PaymentIntents carry our metadata)."""
    response = requests.get(
        f"{stack.extra_env['STRIPE_API_BASE']}/v1/payment_intents?limit=100",
        auth=("sk_test_local", ""),
        timeout=10,
    )
    response.raise_for_status()
    return [
        intent
        for intent in response.json()["data"]
        if intent.get("metadata", {}).get("orderId") == order_id
    ]


def succeeded(intents):
    return [i for i in intents if i["status"] == "succeeded"]


def refunded_amount(intent):
    return sum(charge.get("amount_refunded", 0) for charge in intent["charges"]["data"])


def test_an_unpaid_order_expires_and_the_ticket_is_for_sale_again(stack, seller, buyer):
    sold = sell(stack, seller, price="12.00")
    created = orderable(stack, buyer, sold["id"]).json()

    expires_not_before_its_time(stack, buyer, created)

    wait_for(lambda: ticket(stack, sold["id"])["orderId"] is None)
    listed = requests.get(f"{stack.url}/api/tickets?limit=100", timeout=10).json()
    assert sold["id"] in {t["id"] for t in listed}
    edit = seller.put(
        f"{stack.url}/api/tickets/{sold['id']}", json={"title": "Later", "price": 9}, timeout=10
    )
    assert edit.status_code == 200
    refused = pay(stack, buyer, created["id"])
    assert refused.status_code == 400
    assert refused.json() == {"errors": [{"message": "Cannot pay for a cancelled order"}]}
    assert intents_for(stack, created["id"]) == []


def test_paying_before_expiry_completes_the_order_and_its_expiry_changes_nothing(
    stack, seller, buyer
):
    sold = sell(stack, seller, price="30.00")
    created = orderable(stack, buyer, sold["id"]).json()

    paid = payable(stack, buyer, created["id"])

    assert paid.status_code == 201, paid.text
    wait_for(lambda: get_order(stack, buyer, created["id"])["status"] == "complete")
    # The expiry fires all the same; orders_svc says when it has handled (and ignored) it.
    wait_for(
        lambda: logged(stack, "expiry ignored", created["id"]),
        timeout=EXPIRATION_WINDOW_SECONDS + 20,
    )
    final = get_order(stack, buyer, created["id"])
    assert (final["status"], final["version"]) == ("complete", 1)
    assert ticket(stack, sold["id"])["orderId"] == created["id"]
    cancel = buyer.delete(f"{stack.url}/api/orders/{created['id']}", timeout=10)
    assert cancel.status_code == 400
    assert cancel.json() == {"errors": [{"message": "Cannot cancel a completed order"}]}
    [intent] = succeeded(intents_for(stack, created["id"]))
    assert (intent["amount"], intent["currency"], refunded_amount(intent)) == (3000, "usd", 0)


def test_a_declined_card_then_a_good_one_and_a_double_submit_charge_once(stack, seller, buyer):
    sold = sell(stack, seller, price="45.50")
    created = orderable(stack, buyer, sold["id"]).json()

    declined = payable(stack, buyer, created["id"], token="pm_card_chargeCustomerFail")
    with ThreadPoolExecutor(max_workers=2) as pool:
        both = list(pool.map(lambda _: pay(stack, buyer, created["id"]), range(2)))

    assert declined.status_code == 402
    assert declined.json() == {"errors": [{"message": "Your card was declined."}]}
    assert sorted(r.status_code for r in both) == [201, 400]
    loser = next(r for r in both if r.status_code == 400)
    assert loser.json() == {"errors": [{"message": "Order is already paid"}]}
    assert len(succeeded(intents_for(stack, created["id"]))) == 1
    wait_for(lambda: get_order(stack, buyer, created["id"])["status"] == "complete")


def test_the_expiration_worker_killed_after_an_order_still_expires_it(stack, seller, buyer):
    sold = sell(stack, seller, price="8.00")
    created = orderable(stack, buyer, sold["id"]).json()
    # the expiry is scheduled: its task waits in RabbitMQ, not in the worker
    wait_for(lambda: logged(stack, "expiry scheduled", created["id"]))

    stack.restart_worker("expiration")

    expires_not_before_its_time(stack, buyer, created)


def test_a_charge_still_in_flight_when_the_order_expires_is_refunded(
    stack, seller, buyer, stripe_relay
):
    sold = sell(stack, seller, price="5.00")
    created = orderable(stack, buyer, sold["id"]).json()
    # payments_svc has the order once a body it must refuse is refused for itself (400),
    # not for an unknown order (404); nothing reaches Stripe.
    wait_for(lambda: pay(stack, buyer, created["id"], token="not-a-card").status_code == 400)
    held_before = stripe_relay.held_chunks

    # given: Stripe stalls, and the buyer pays inside the window
    stripe_relay.hold()
    try:
        with ThreadPoolExecutor(max_workers=1) as pool:
            answer = pool.submit(pay, stack, buyer, created["id"])
            # the charge is on its way to Stripe, before expiresAt
            wait_for(lambda: stripe_relay.held_chunks > held_before)
            assert datetime.now(UTC) < datetime.fromisoformat(created["expiresAt"])
            # when: the order expires while the charge is in flight
            wait_for(
                lambda: get_order(stack, buyer, created["id"])["status"] == "cancelled",
                timeout=EXPIRATION_WINDOW_SECONDS + 20,
            )
            stripe_relay.release()
            paid = answer.result(timeout=60)
    finally:
        stripe_relay.release()

    # then: Stripe charged, the order stays cancelled, and the money goes back in full
    assert paid.status_code in (201, 400), paid.text
    if paid.status_code == 400:  # payments_svc already knew: it refunded at once
        assert paid.json() == {"errors": [{"message": "Cannot pay for a cancelled order"}]}
    assert len(succeeded(intents_for(stack, created["id"]))) == 1  # charged once
    wait_for(
        lambda: refunded_amount(succeeded(intents_for(stack, created["id"]))[0]) == 500,
        timeout=60,
    )
    final = get_order(stack, buyer, created["id"])
    assert (final["status"], final["version"]) == ("cancelled", 1)
    wait_for(lambda: ticket(stack, sold["id"])["orderId"] is None)


def test_paying_after_expiry_is_refused_and_charges_nothing(stack, seller, buyer):
    sold = sell(stack, seller, price="6.00")
    created = orderable(stack, buyer, sold["id"]).json()
    wait_for(lambda: pay(stack, buyer, created["id"], token="not-a-card").status_code == 400)
    expires_at = datetime.fromisoformat(created["expiresAt"])
    wait_for(lambda: datetime.now(UTC) >= expires_at, timeout=EXPIRATION_WINDOW_SECONDS + 5)

    late = pay(stack, buyer, created["id"])

    # Whether the cancellation has reached payments_svc yet or not, the window is shut.
    assert late.status_code == 400
    assert late.json()["errors"][0]["message"] in (
        "Order has expired",
        "Cannot pay for a cancelled order",
    )
    wait_for(lambda: get_order(stack, buyer, created["id"])["status"] == "cancelled")
    assert intents_for(stack, created["id"]) == []


def test_an_order_cannot_be_bought_twice_while_paid(stack, seller, buyer):
    sold = sell(stack, seller, price="15.00")
    created = orderable(stack, buyer, sold["id"]).json()
    assert payable(stack, buyer, created["id"]).status_code == 201

    second = order(stack, user(stack, "second"), sold["id"])

    assert second.status_code == 400
    assert second.json() == {"errors": [{"message": "Ticket is already reserved"}]}
