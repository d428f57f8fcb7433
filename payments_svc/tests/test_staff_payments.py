"""Staff refund a payment from the admin, through services.payment_refund_by_staff: owed at
once, sent to Stripe (localstripe over HTTP) by the worker's run, once; the sale stands."""

import pytest

from payments import services
from payments.models import OrderReplica, Refund
from shared_lib.models import OutboxEvent, StaffAction
from shared_lib.staff import Actor
from shared_lib.testing.admin import grant, offered_actions, run_staff_action, shown_messages
from shared_lib.testing.events import deliver
from tests.factories import GOOD_CARD, cancelled_event, order_replica

pytestmark = pytest.mark.django_db

STAFF = Actor(id="c8f3e3f0-0000-4000-8000-000000000003", name="finance@example.com")
CHANGELIST = "/admin/payments/payments/payment/"
REFUNDS = ("POST", "/v1/refunds")


def paid(price="45.00"):
    order = order_replica(price=price)
    return services.payment_create(user_id=order.user_id, order_id=str(order.id), token=GOOD_CARD)


def test_staff_refund_a_payment_once_and_the_sale_stands(stripe_ledger, stripe_proxy):
    payment = paid()
    events_before = OutboxEvent.objects.count()

    refund, owed_now = services.payment_refund_by_staff(payment_id=payment.id, actor=STAFF)
    again, owed_again = services.payment_refund_by_staff(payment_id=payment.id, actor=STAFF)

    assert (owed_now, owed_again, again.id) == (True, False, refund.id)
    assert (refund.status, refund.amount_cents, refund.payment_id) == ("pending", 4500, payment.id)
    assert stripe_proxy.keys(*REFUNDS) == []  # the request never waits on Stripe
    services.payments_reconcile()  # the worker's run
    refund.refresh_from_db()
    assert refund.status == "succeeded"
    [at_stripe] = stripe_ledger.refunds(payment.stripe_id)
    assert (at_stripe["amount"], at_stripe["status"]) == (4500, "succeeded")
    assert stripe_proxy.keys(*REFUNDS) == [f"refund-{payment.stripe_id}"]
    [action] = StaffAction.objects.all()
    assert (action.actor_id, action.action, action.target, action.detail) == (
        STAFF.id,
        "payment.refund",
        str(payment.id),
        {"orderId": str(payment.order_id), "amountCents": 4500},
    )
    # Money only: nothing is announced, and the order stays as it was.
    assert OutboxEvent.objects.count() == events_before
    assert OrderReplica.objects.get(id=payment.order_id).status == "created"


def test_a_payment_already_refunded_for_its_cancelled_order_is_not_refunded_again(
    stripe_ledger, stripe_proxy
):
    payment = paid()
    deliver(cancelled_event(payment.order_id))  # the order expired: its charge is owed back
    services.order_settle(order_id=payment.order_id)

    refund, owed_now = services.payment_refund_by_staff(payment_id=payment.id, actor=STAFF)

    assert (owed_now, refund.status) == (False, "succeeded")
    assert len(stripe_ledger.refunds(payment.stripe_id)) == 1
    assert Refund.objects.count() == 1
    assert StaffAction.objects.count() == 0


def test_staff_refund_from_the_admin(staff_admin_client, stripe_ledger, stripe_proxy):
    payment = paid(price="12.00")
    assert "refund_payment" not in offered_actions(staff_admin_client, CHANGELIST)
    grant(staff_admin_client, "payments.refund_payment")

    first = run_staff_action(staff_admin_client, CHANGELIST, "refund_payment", [payment])
    second = run_staff_action(staff_admin_client, CHANGELIST, "refund_payment", [payment])
    services.payments_reconcile()
    third = run_staff_action(staff_admin_client, CHANGELIST, "refund_payment", [payment])

    owed = "refund owed; the worker sends it to Stripe within a minute (see Refunds)"
    assert shown_messages(first) == [("success", f"{payment}: {owed}")]
    assert shown_messages(second) == [("success", f"{payment}: its refund is owed already")]
    assert shown_messages(third) == [("success", f"{payment}: was refunded already")]
    assert [r["amount"] for r in stripe_ledger.refunds(payment.stripe_id)] == [1200]
    [action] = StaffAction.objects.all()
    assert (action.actor_id, action.actor_name) == (
        staff_admin_client.user_id,
        staff_admin_client.email,
    )


def test_a_refund_stripe_refused_for_good_is_reported_as_such(
    staff_admin_client, stripe_ledger, stripe_proxy
):
    payment = paid()
    services.payment_refund_by_staff(payment_id=payment.id, actor=STAFF)
    Refund.objects.update(status=Refund.Status.FAILED, last_error="charge_disputed")
    grant(staff_admin_client, "payments.refund_payment")

    response = run_staff_action(staff_admin_client, CHANGELIST, "refund_payment", [payment])

    assert shown_messages(response) == [
        ("warning", f"{payment}: its refund failed earlier: charge_disputed")
    ]
    assert StaffAction.objects.count() == 1
