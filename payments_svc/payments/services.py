"""Every payments write and rule: paying exactly once, refunds, the order replica.

Money rules (docs/events.md):
- A charge is a PaymentIntent created unconfirmed, its id stored on the attempt, then
  confirmed. An attempt whose answer was lost is settled by retrieving that intent (or
  finding it by the attempt's metadata): settling never creates or confirms anything, and
  an attempt Stripe never confirmed was never charged.
- A refund owed is a Refund row, written in the transaction that learns it is owed (never
  calling Stripe there), then settled by the worker with back-off until Stripe agrees.
- A card that asks its holder to authenticate (3-D Secure) leaves its attempt waiting
  (requires_action) while the buyer's browser runs the challenge. Whichever of Stripe's
  webhook, the buyer's GET, the worker or the order's cancellation learns the outcome
  first settles it; recording a success is idempotent per attempt, so any order of
  arrival ends in one payment (or one refund).
"""

from __future__ import annotations

import contextlib
import logging
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from payments import gateway, selectors
from payments.metrics import REFUNDS_SETTLED
from payments.models import OrderReplica, Payment, PaymentAttempt, Refund, StripeEvent
from shared_lib.errors import BadRequest, NotFound, PaymentRequired, ServiceUnavailable
from shared_lib.events import Subject, publish
from shared_lib.events.versioning import Applied, apply_to_replica
from shared_lib.ids import invalid_message, parse_id, required_message
from shared_lib.money import SMALLEST_CHARGE, SMALLEST_CHARGE_CENTS
from shared_lib.staff import Actor, record_staff_action

logger = logging.getLogger(__name__)

ORDER_ID_REQUIRED = required_message("orderId")  # "OrderId must be provided"
ORDER_ID_INVALID = invalid_message("orderId")  # "OrderId must be a valid id"
TOKEN_INVALID = "Token must be a Stripe PaymentMethod id or card token"  # noqa: S105 (a message)
ORDER_CANCELLED = "Cannot pay for a cancelled order"
ORDER_EXPIRED = "Order has expired"
ORDER_PAID = "Order is already paid"
ORDER_TOO_SMALL = f"Order is below {SMALLEST_CHARGE}, the smallest amount a card can be charged"
PROVIDER_UNAVAILABLE = "The payment provider is unavailable; please try again"
PAYMENT_PENDING = "The payment is still being processed; please check again shortly"
AWAITING_AUTHENTICATION = "This order's payment is waiting for the cardholder to authenticate"
TOO_MANY_DECLINES = "Too many declined cards for this order"

# What Stripe.js Elements produces (a PaymentMethod id), or a legacy card token from
# Stripe Checkout / Stripe.js v2 (older clients send these), which Stripe makes into one.
TOKEN_PATTERN = r"^(pm|tok)_[A-Za-z0-9_]{1,250}$"  # noqa: S105 (a pattern, not a secret)
_TOKEN = re.compile(TOKEN_PATTERN)
# An attempt still pending after this long died with its process; it is then retried
# under its own idempotency key. Longer than Stripe's timeout, so it is never live.
STALE_ATTEMPT = timedelta(minutes=2)
# A refund Stripe could not take is tried again after 30 s (the worker's period), then
# twice as long each time up to an hour: an outage of any length ends in the refund,
# without hammering Stripe meanwhile.
REFUND_FIRST_RETRY = timedelta(seconds=30)
REFUND_MAX_RETRY = timedelta(hours=1)
# Stripe's code for a charge that is already fully refunded (e.g. by staff in its
# dashboard): the money is back with the buyer, so the refund owed counts as done.
ALREADY_REFUNDED = "charge_already_refunded"
# Intent statuses in which nothing was taken from the card and nothing ever will be
# without another confirm (which only a buyer's own payment request sends).
NOT_CHARGED = frozenset({"requires_payment_method", "requires_confirmation", "canceled"})
# Of those, the ones anyone holding the intent's client secret (the buyer's browser, after
# a 202) could still confirm: an attempt is declined on one only once it is cancelled.
STILL_CONFIRMABLE = NOT_CHARGED - {"canceled"}
NEVER_SENT = "not charged: Stripe has no PaymentIntent for this attempt"
NEVER_CONFIRMED = "not charged: its PaymentIntent was never confirmed"
DECLINED_BY_STRIPE = "Your card was declined."
INTENT_CANCELLED = "not charged: its PaymentIntent was cancelled"
# Why an attempt settled as declined without any card being refused.
NOT_THE_CARDS_FAULT = (NEVER_SENT, NEVER_CONFIRMED, INTENT_CANCELLED)
# An attempt whose outcome someone may still learn from Stripe.
OPEN = (
    PaymentAttempt.Status.PENDING,
    PaymentAttempt.Status.UNKNOWN,
    PaymentAttempt.Status.REQUIRES_ACTION,
)


def parse_token(value: Any) -> str:
    if not isinstance(value, str) or not _TOKEN.fullmatch(value):
        raise BadRequest(TOKEN_INVALID, field="token")
    return value


def _refuse_unpayable(order: OrderReplica) -> None:
    if order.status == OrderReplica.Status.CANCELLED:
        raise BadRequest(ORDER_CANCELLED)
    if order.status == OrderReplica.Status.COMPLETE or hasattr(order, "payment"):
        raise BadRequest(ORDER_PAID)
    if order.expires_at <= timezone.now():
        # Its expiry event may still be on the way; the window has closed all the same.
        raise BadRequest(ORDER_EXPIRED)
    if order.amount_cents < SMALLEST_CHARGE_CENTS:
        # A ticket listed before tickets_svc refused such prices: Stripe would refuse the
        # charge, so it is not asked.
        raise BadRequest(ORDER_TOO_SMALL)


def _start_attempt(*, user_id: uuid.UUID, order_id: uuid.UUID, token: Any) -> PaymentAttempt:
    """Checks in DESIGN order under the order's row lock, then records the attempt."""
    with transaction.atomic():
        order = OrderReplica.objects.select_for_update().filter(id=order_id).first()
        if order is None or order.user_id != user_id:
            raise NotFound()  # someone else's order is as unknown as a missing one
        token = parse_token(token)
        _refuse_unpayable(order)
        now = timezone.now()
        attempts = order.attempts.select_for_update()
        if attempts.filter(
            status=PaymentAttempt.Status.PENDING, updated_at__gt=now - STALE_ATTEMPT
        ):
            # Another request is charging this order right now: it wins the race.
            raise BadRequest(ORDER_PAID)
        if attempts.filter(status=PaymentAttempt.Status.REQUIRES_ACTION):
            # Its cardholder may still pass the challenge: a second charge could succeed
            # beside it. Its outcome (or the order's expiry) frees the order.
            raise BadRequest(AWAITING_AUTHENTICATION)
        unsettled = attempts.filter(
            status__in=[PaymentAttempt.Status.UNKNOWN, PaymentAttempt.Status.PENDING]
        ).first()
        if unsettled is not None:
            # Its outcome was never learned (timeout, crash): carry on with it, with the
            # same card. Its stored PaymentIntent is looked up and confirmed only if it
            # never was; without one, the create is re-sent under the same idempotency
            # key (unconfirmed, so it charges nothing whatever Stripe remembers).
            unsettled.status = PaymentAttempt.Status.PENDING
            unsettled.updated_at = now
            unsettled.save(update_fields=["status", "updated_at"])
            return unsettled
        # A buyer's few cards pass; card after card on one order (card testing) is
        # refused before Stripe is asked. Only cards refused count: an attempt settled as
        # not charged after an outage or a lost answer was no card's fault.
        declined = attempts.filter(status=PaymentAttempt.Status.DECLINED).exclude(
            error__in=NOT_THE_CARDS_FAULT
        )
        if declined.count() >= settings.PAYMENTS_MAX_DECLINES_PER_ORDER:
            raise BadRequest(TOO_MANY_DECLINES)
        return PaymentAttempt.objects.create(
            order=order, token=token, amount_cents=order.amount_cents
        )


def _settle(attempt: PaymentAttempt, status: str, error: str = "") -> None:
    """Record what became of an attempt, unless another path has meanwhile recorded its
    success: a charge once recorded is never written over by an older answer."""
    attempt.updated_at = timezone.now()
    updated = (
        PaymentAttempt.objects.filter(id=attempt.id)
        .exclude(status=PaymentAttempt.Status.SUCCEEDED)
        .update(status=status, error=error, updated_at=attempt.updated_at)
    )
    if updated:
        attempt.status, attempt.error = status, error
    else:
        attempt.refresh_from_db()


def _confirmed_intent(attempt: PaymentAttempt) -> gateway.Intent:
    """The attempt's PaymentIntent after confirming it, whichever step was left to do."""
    if not attempt.stripe_intent_id:
        method = gateway.payment_method_for(
            attempt.token, idempotency_key=f"payment-method-{attempt.id}"
        )
        intent_id = gateway.intent_create(
            amount_cents=attempt.amount_cents,
            payment_method=method,
            idempotency_key=attempt.idempotency_key,
            metadata={"orderId": str(attempt.order_id), "attemptId": str(attempt.id)},
        )
        # Committed before the confirm is sent: whatever happens next, this attempt is
        # settled by looking the intent up, never by creating another.
        attempt.stripe_intent_id = intent_id
        attempt.save(update_fields=["stripe_intent_id"])
        return gateway.intent_confirm(
            intent_id, idempotency_key=f"{attempt.idempotency_key}-confirm"
        )
    intent = gateway.intent_retrieve(attempt.stripe_intent_id)
    if intent.status == "requires_confirmation":  # the confirm never reached Stripe
        return gateway.intent_confirm(
            intent.id, idempotency_key=f"{attempt.idempotency_key}-confirm"
        )
    return intent


class PaymentPending(Exception):
    """Stripe has not decided yet (processing)."""


@dataclass
class ActionRequired(Exception):
    """The cardholder must authenticate (3-D Secure) before Stripe charges the card."""

    attempt_id: uuid.UUID
    client_secret: str


def _charge(attempt: PaymentAttempt) -> str:
    """Charge this attempt (the buyer's own request); its PaymentIntent id when it succeeded.

    Raises CardDeclined (attempt declined), GatewayUnavailable (attempt unknown) or
    PaymentPending (attempt unknown until Stripe decides; never declined for it).
    """
    try:
        intent = _confirmed_intent(attempt)
    except gateway.CardDeclined as exc:
        _settle(attempt, PaymentAttempt.Status.DECLINED, exc.message)
        raise
    except gateway.GatewayUnavailable as exc:
        _settle(attempt, PaymentAttempt.Status.UNKNOWN, str(exc))
        raise
    if intent.status == "succeeded":
        return intent.id
    if intent.status in NOT_CHARGED:
        message = intent.error or DECLINED_BY_STRIPE
        _settle(attempt, PaymentAttempt.Status.DECLINED, message)
        raise gateway.CardDeclined(message)
    if intent.status == "requires_action":
        _settle(attempt, PaymentAttempt.Status.REQUIRES_ACTION)
        raise ActionRequired(attempt.id, intent.client_secret)
    _settle(attempt, PaymentAttempt.Status.UNKNOWN, f"Stripe: {intent.status}")
    raise PaymentPending(intent.status)


def _owe_refund(attempt: PaymentAttempt, intent_id: str, payment: Payment | None) -> Refund:
    """Record that this charge goes back (inside the caller's transaction; no Stripe call)."""
    refund, _ = Refund.objects.get_or_create(
        attempt=attempt,
        defaults={
            "payment": payment,
            "order_id": attempt.order_id,
            "payment_intent_id": intent_id,
            "amount_cents": attempt.amount_cents,
        },
    )
    return refund


def _record(attempt: PaymentAttempt, intent_id: str) -> tuple[Payment | None, Refund | None]:
    """Store a charge that succeeded and announce it, in one transaction; owe it back
    when the order was cancelled meanwhile or another attempt already paid it.

    Once per attempt: whichever path (the buyer's request, a webhook, a GET, the worker)
    records it second gets what the first recorded."""
    with transaction.atomic():
        order = OrderReplica.objects.select_for_update().get(id=attempt.order_id)
        recorded = PaymentAttempt.objects.select_for_update().get(id=attempt.id)
        if recorded.status == PaymentAttempt.Status.SUCCEEDED:
            attempt.refresh_from_db()
            return (
                Payment.objects.filter(attempt=attempt).first(),
                Refund.objects.filter(attempt=attempt).first(),
            )
        attempt.stripe_intent_id = intent_id
        attempt.save(update_fields=["stripe_intent_id"])
        _settle(attempt, PaymentAttempt.Status.SUCCEEDED)
        if Payment.objects.filter(order=order).exists():
            # Another attempt of this order paid it first (one left from before intents
            # were stored, or a challenge passed after a second card paid).
            return None, _owe_refund(attempt, intent_id, None)
        payment = Payment.objects.create(
            id=attempt.id,
            order=order,
            attempt=attempt,
            stripe_id=intent_id,
            amount_cents=attempt.amount_cents,
        )
        publish(
            Subject.PAYMENT_CREATED,
            {"id": payment.id, "orderId": order.id, "stripeId": intent_id},
        )
        refund = None
        if order.status == OrderReplica.Status.CANCELLED:
            # Expired while the card was being charged: the buyer never pays for a ticket
            # they did not get (orders_svc ignores this payment).
            refund = _owe_refund(attempt, intent_id, payment)
    return payment, refund


def payment_create(*, user_id: uuid.UUID, order_id: Any, token: Any) -> Payment:
    """Charge the buyer for their order, exactly once (docs/events.md).

    Raises ActionRequired when the card asks its holder to authenticate: the attempt then
    waits, and the order is not payable again until Stripe has answered for it."""
    order_id = parse_id(order_id, field="orderId")
    _refresh_waiting(order_id=order_id, user_id=user_id)
    attempt = _start_attempt(user_id=user_id, order_id=order_id, token=token)
    try:
        # No lock is held while Stripe works: the pending attempt keeps others out.
        intent_id = _charge(attempt)
    except gateway.CardDeclined as exc:
        raise PaymentRequired(exc.message) from None
    except gateway.GatewayUnavailable:
        raise ServiceUnavailable(PROVIDER_UNAVAILABLE) from None
    except PaymentPending:
        # The buyer's retry looks the same intent up; the worker settles it meanwhile.
        raise ServiceUnavailable(PAYMENT_PENDING) from None
    payment, refund = _record(attempt, intent_id)
    if refund is not None:
        _refund_now(refund)
        # No payment: another attempt of this order already holds its payment.
        raise BadRequest(ORDER_CANCELLED if payment is not None else ORDER_PAID)
    assert payment is not None  # _record owes a refund whenever it makes no payment
    return payment


def _refund_now(refund: Refund) -> None:
    try:
        refund_settle(refund_id=refund.id)  # at once if Stripe answers; else the worker
    except gateway.GatewayUnavailable:
        logger.warning(
            "refund deferred: Stripe unavailable", extra={"order_id": str(refund.order_id)}
        )


def payment_refund_by_staff(*, payment_id: uuid.UUID, actor: Actor) -> tuple[Refund, bool]:
    """Staff give a payment's money back (the admin): a refund owed and recorded with who
    did it, in one transaction; the worker's next run (within a minute) sends it to Stripe,
    as every refund is sent, so an admin request never waits on Stripe. (refund, True) when
    this call owed it; (the refund owed or made before, False) otherwise, nothing recorded.

    Money only: the order stays paid and its ticket sold (a goodwill refund, a disputed
    charge). An unpaid order is cancelled in orders' admin instead."""
    with transaction.atomic():
        payment = Payment.objects.select_for_update().filter(id=payment_id).first()
        if payment is None:
            raise NotFound()
        earlier = Refund.objects.filter(attempt_id=payment.attempt_id).first()
        if earlier is not None:
            return earlier, False
        refund = _owe_refund(payment.attempt, payment.stripe_id, payment)
        record_staff_action(
            actor,
            action="payment.refund",
            target=payment.id,
            detail={"orderId": str(payment.order_id), "amountCents": payment.amount_cents},
        )
    return refund, True


def _refresh_waiting(*, order_id: uuid.UUID, user_id: uuid.UUID) -> None:
    """Ask Stripe about this order's attempts waiting for their cardholder, so a challenge
    refused (with no webhook yet) does not keep the buyer from paying with another card."""
    waiting = PaymentAttempt.objects.filter(
        order_id=order_id,
        order__user_id=user_id,
        status=PaymentAttempt.Status.REQUIRES_ACTION,
    ).values_list("id", flat=True)
    for attempt_id in waiting:
        try:
            attempt_settle(attempt_id=attempt_id)
        except gateway.GatewayUnavailable:
            return  # it stays waiting; _start_attempt says so


# --- settling what was left open ------------------------------------------------------


def _claim(attempt_id: uuid.UUID) -> tuple[PaymentAttempt, str] | None:
    """Take an attempt whose outcome is unknown (or whose process died, or which waits for
    its cardholder) for settling, the way a buyer's retry takes it: pending and touched
    now, so nobody else works on it. With the status it had."""
    now = timezone.now()
    with transaction.atomic():
        attempt = PaymentAttempt.objects.select_for_update().filter(id=attempt_id).first()
        if attempt is None or not _unsettled(attempt, now):
            return None
        before = attempt.status
        attempt.status = PaymentAttempt.Status.PENDING
        attempt.updated_at = now
        attempt.save(update_fields=["status", "updated_at"])
    return attempt, before


def _unsettled(attempt: PaymentAttempt, now: datetime) -> bool:
    if attempt.status in (PaymentAttempt.Status.UNKNOWN, PaymentAttempt.Status.REQUIRES_ACTION):
        return True
    return attempt.status == PaymentAttempt.Status.PENDING and (
        attempt.updated_at <= now - STALE_ATTEMPT
    )


def _unsettled_attempts(now: datetime) -> Q:
    return Q(status__in=[PaymentAttempt.Status.UNKNOWN, PaymentAttempt.Status.REQUIRES_ACTION]) | Q(
        status=PaymentAttempt.Status.PENDING, updated_at__lte=now - STALE_ATTEMPT
    )


def attempt_settle(*, attempt_id: uuid.UUID) -> str | None:
    """Learn what became of an attempt whose answer was lost, without charging anything.

    Its PaymentIntent is retrieved (by the stored id, else by the attempt's metadata), never
    created or confirmed: none, or one never confirmed, means not charged; a charge that
    succeeded is recorded (and owed back if the order is cancelled); one not charged is
    cancelled at Stripe before the attempt is declined (its client secret may be in a
    browser, which could still confirm it); one waiting for its cardholder keeps waiting,
    unless its order is cancelled: then it is cancelled too; processing stays unknown
    until Stripe decides. Returns the attempt's status (None when it was not open).
    Raises GatewayUnavailable while Stripe is down.
    """
    claimed = _claim(attempt_id)
    if claimed is None:
        return None
    attempt, before = claimed
    try:
        if attempt.stripe_intent_id:
            intent = gateway.intent_retrieve(attempt.stripe_intent_id)
        else:
            intent = gateway.intent_find(attempt_id=str(attempt.id))
        if intent is not None and (
            intent.status in STILL_CONFIRMABLE
            or (intent.status == "requires_action" and _order_cancelled(attempt))
        ):
            after = gateway.intent_cancel(intent.id)
            # Cancelled: the reason is what it was before (declined, never confirmed);
            # anything else (it succeeded meanwhile) is the answer.
            if after.status != "canceled" or intent.status == "requires_action":
                intent = after
    except gateway.GatewayUnavailable as exc:
        waiting = before == PaymentAttempt.Status.REQUIRES_ACTION
        _settle(attempt, before if waiting else PaymentAttempt.Status.UNKNOWN, str(exc))
        raise
    if intent is None:
        _settle(attempt, PaymentAttempt.Status.DECLINED, NEVER_SENT)
        return attempt.status
    _apply_intent(attempt, intent)
    return attempt.status


def _order_cancelled(attempt: PaymentAttempt) -> bool:
    return OrderReplica.objects.filter(
        id=attempt.order_id, status=OrderReplica.Status.CANCELLED
    ).exists()


def _apply_intent(attempt: PaymentAttempt, intent: gateway.Intent) -> None:
    """Settle an open attempt by what Stripe says of its PaymentIntent now."""
    if intent.status == "succeeded":
        _, refund = _record(attempt, intent.id)
        if refund is not None and refund.status == Refund.Status.PENDING:
            transaction.on_commit(partial(_refund_now, refund), robust=True)
        return
    if attempt.stripe_intent_id != intent.id:
        attempt.stripe_intent_id = intent.id
        attempt.save(update_fields=["stripe_intent_id"])
    if intent.status in NOT_CHARGED:
        reasons = {"requires_confirmation": NEVER_CONFIRMED, "canceled": INTENT_CANCELLED}
        reason = intent.error or reasons.get(intent.status, DECLINED_BY_STRIPE)
        _settle(attempt, PaymentAttempt.Status.DECLINED, reason)
    elif intent.status == "requires_action":
        _settle(attempt, PaymentAttempt.Status.REQUIRES_ACTION)
    else:
        _settle(attempt, PaymentAttempt.Status.UNKNOWN, f"Stripe: {intent.status}")


def _retry_delay(tries: int) -> timedelta:
    return min(REFUND_FIRST_RETRY * 2 ** max(tries - 1, 0), REFUND_MAX_RETRY)


def refund_settle(*, refund_id: uuid.UUID, now: datetime | None = None) -> str | None:
    """Ask Stripe for one refund owed; returns its status after (None if not pending or
    another worker holds it). Raises GatewayUnavailable after recording the try."""
    now = now or timezone.now()
    outage: gateway.GatewayUnavailable | None = None
    with transaction.atomic():
        refund = (
            Refund.objects.select_for_update(skip_locked=True)
            .filter(id=refund_id, status=Refund.Status.PENDING)
            .first()
        )
        if refund is None:
            return None
        refund.tries += 1
        refund.updated_at = timezone.now()
        try:
            refund.stripe_id = gateway.stripe_refund(
                payment_intent_id=refund.payment_intent_id,
                idempotency_key=refund.idempotency_key,
            )
            refund.status = Refund.Status.SUCCEEDED
            refund.last_error = ""
            outcome = "succeeded"
        except gateway.RefundRefused as exc:
            refund.last_error = f"{exc.code or 'invalid_request'}: {exc.message}"
            if exc.code == ALREADY_REFUNDED:
                refund.status, outcome = Refund.Status.SUCCEEDED, "already_refunded"
            else:
                refund.status, outcome = Refund.Status.FAILED, "failed"
        except gateway.GatewayUnavailable as exc:
            refund.last_error = str(exc)
            refund.next_attempt_at = now + _retry_delay(refund.tries)
            outage, outcome = exc, "retry"
        refund.save()
    REFUNDS_SETTLED.labels(outcome=outcome).inc()
    log = logger.error if outcome == "failed" else logger.warning
    log(
        f"refund {outcome}",
        extra={
            "order_id": str(refund.order_id),
            "payment_intent": refund.payment_intent_id,
            "tries": refund.tries,
            "error": refund.last_error,
        },
    )
    if outage is not None:
        raise outage
    return refund.status


def _owe_refunds_of_cancelled(order_ids: Any) -> None:
    """Refund rows for every charge of these (cancelled) orders that has none yet."""
    charged = (
        PaymentAttempt.objects.filter(
            order_id__in=order_ids, status=PaymentAttempt.Status.SUCCEEDED, refund__isnull=True
        )
        .filter(Q(payment__isnull=False) | ~Q(stripe_intent_id=""))
        .select_related("payment")
    )
    for attempt in charged:
        payment = getattr(attempt, "payment", None)
        intent_id = payment.stripe_id if payment is not None else attempt.stripe_intent_id
        _owe_refund(attempt, intent_id, payment)


def order_settle(*, order_id: uuid.UUID, now: datetime | None = None) -> None:
    """Settle one order's open attempts and due refunds now (after its cancel commits),
    so the money goes back at once when Stripe answers; the worker's run covers the rest."""
    now = now or timezone.now()
    try:
        for attempt_id in PaymentAttempt.objects.filter(
            _unsettled_attempts(now), order_id=order_id
        ).values_list("id", flat=True):
            attempt_settle(attempt_id=attempt_id)
        for refund_id in Refund.objects.filter(
            order_id=order_id,
            status=Refund.Status.PENDING,
            next_attempt_at__lte=max(now, timezone.now()),
        ).values_list("id", flat=True):
            refund_settle(refund_id=refund_id, now=now)
    except gateway.GatewayUnavailable:
        logger.warning("settling deferred: Stripe unavailable", extra={"order_id": str(order_id)})


def payments_reconcile(*, now: datetime | None = None) -> int:
    """The worker's periodic run: settle attempts whose answer was lost, then every refund
    owed and due. Each is settled on its own: a permanent refusal is recorded on its row
    and the run goes on; an outage ends that part of the run early (everything stays owed
    and is tried again). Returns how many refunds were completed."""
    now = now or timezone.now()
    open_attempts = (
        PaymentAttempt.objects.filter(_unsettled_attempts(now))
        # A live order's buyer may still be retrying their own attempt: it is theirs for
        # STALE_ATTEMPT (a processing charge, a buyer who gave up: settled after that).
        .filter(
            Q(order__status=OrderReplica.Status.CANCELLED) | Q(updated_at__lte=now - STALE_ATTEMPT)
        )
        .order_by("updated_at")  # the one an outage left last goes last
        .values_list("id", flat=True)
    )
    try:
        for attempt_id in list(open_attempts):
            attempt_settle(attempt_id=attempt_id)
    except gateway.GatewayUnavailable:
        logger.warning("attempt settling deferred: Stripe unavailable")
    with transaction.atomic():
        # A safety net: every charge of a cancelled order is owed back, whichever path
        # (a manual fix in the database, a crash between two steps) left it without a row.
        _owe_refunds_of_cancelled(
            OrderReplica.objects.filter(status=OrderReplica.Status.CANCELLED).values("id")
        )
    due = (
        # The real clock too: refunds the attempts above just found owed are due at once.
        Refund.objects.filter(
            status=Refund.Status.PENDING, next_attempt_at__lte=max(now, timezone.now())
        )
        .order_by("next_attempt_at")
        .values_list("id", flat=True)
    )
    completed = 0
    try:
        for refund_id in list(due):
            status = refund_settle(refund_id=refund_id, now=now)
            completed += status == Refund.Status.SUCCEEDED
    except gateway.GatewayUnavailable:
        logger.warning("refunds deferred: Stripe unavailable")
    return completed


def order_replica_apply(*, order_id: uuid.UUID, version: int, **fields: Any) -> Applied:
    """Bring the order replica to `version` (created with every field; later only status)."""
    return apply_to_replica(OrderReplica, id=order_id, version=version, fields=fields)


def order_completed_apply(*, order_id: uuid.UUID, version: int) -> Applied:
    """The order was paid: the replica follows its version and status."""
    return order_replica_apply(
        order_id=order_id, version=version, status=OrderReplica.Status.COMPLETE
    )


def order_cancelled_apply(*, order_id: uuid.UUID, version: int) -> Applied:
    """Mark the replica cancelled and owe back whatever it was charged, in the handler's
    transaction; Stripe is called only after it commits, so a cancel always commits."""
    outcome = order_replica_apply(
        order_id=order_id, version=version, status=OrderReplica.Status.CANCELLED
    )
    # An order never paid for (most expiries) has nothing to refund or settle. An attempt
    # begun meanwhile is either seen here or, waiting on the replica's row lock, finds
    # the order cancelled.
    if outcome is not Applied.STALE and PaymentAttempt.objects.filter(order_id=order_id).exists():
        # Paid (or maybe paid), then cancelled: the expiry won the race with the charge.
        _owe_refunds_of_cancelled([order_id])
        transaction.on_commit(partial(order_settle, order_id=order_id), robust=True)
    return outcome


def order_created_apply(
    *,
    order_id: uuid.UUID,
    version: int,
    user_id: uuid.UUID,
    price: Decimal,
    status: str,
    expires_at: datetime,
) -> Applied:
    return order_replica_apply(
        order_id=order_id,
        version=version,
        user_id=user_id,
        price=price,
        status=status,
        expires_at=expires_at,
    )


# --- what the buyer and Stripe's webhooks learn ---------------------------------------

# An attempt's status as GET /api/payments/<id> reports it (docs/api.md).
REPORTED_STATUS = {
    PaymentAttempt.Status.PENDING: "processing",
    PaymentAttempt.Status.UNKNOWN: "processing",
    PaymentAttempt.Status.REQUIRES_ACTION: "requires_action",
    PaymentAttempt.Status.SUCCEEDED: "succeeded",
    PaymentAttempt.Status.DECLINED: "failed",
}
INTENT_EVENTS = frozenset({"payment_intent.succeeded", "payment_intent.payment_failed"})
REFUND_EVENT = "charge.refunded"


@dataclass(frozen=True)
class PaymentCheck:
    attempt: PaymentAttempt
    # While it waits for its cardholder: what their browser needs to run the challenge
    # (asked of Stripe each time, never stored).
    client_secret: str = ""


def payment_check(*, payment_id: uuid.UUID, user_id: uuid.UUID) -> PaymentCheck:
    """The payer's payment, after asking Stripe about it while it is open (so a purchase
    completes even when no webhook arrives); NotFound for anyone else."""
    attempt = selectors.attempt_get_for(payment_id=payment_id, user_id=user_id)
    if attempt is None:
        raise NotFound()
    if attempt.status not in OPEN:
        return PaymentCheck(attempt)
    try:
        attempt_settle(attempt_id=attempt.id)  # no-op while its own request is live
        attempt.refresh_from_db()
        if attempt.status == PaymentAttempt.Status.REQUIRES_ACTION:
            secret = gateway.intent_retrieve(attempt.stripe_intent_id).client_secret
            return PaymentCheck(attempt, secret)
    except gateway.GatewayUnavailable:
        logger.warning("payment check deferred: Stripe unavailable")
        attempt.refresh_from_db()
    return PaymentCheck(attempt)


def stripe_event_apply(*, event_id: str, event_type: str, obj: dict[str, Any]) -> bool:
    """Apply one verified Stripe event, once per event id whatever Stripe resends; False
    when it was applied before."""
    with transaction.atomic():
        # A second delivery running at the same time waits here for the first to commit.
        _, created = StripeEvent.objects.get_or_create(id=event_id, defaults={"type": event_type})
        if not created:
            return False
        if event_type in INTENT_EVENTS:
            _intent_event(obj)
        elif event_type == REFUND_EVENT:
            _refund_event(obj)
    return True


def _attempt_of(intent_id: str, metadata: dict[str, Any]) -> PaymentAttempt | None:
    """The attempt a PaymentIntent charges: by its stored id, else by the metadata it was
    created with (an attempt whose create answer was lost has no id stored)."""
    attempt = PaymentAttempt.objects.filter(stripe_intent_id=intent_id).first()
    if attempt is None:
        with contextlib.suppress(ValueError):
            attempt_id = uuid.UUID(str(metadata.get("attemptId")))
            # One that stores another intent is not this one's (never overwrite it).
            attempt = PaymentAttempt.objects.filter(id=attempt_id, stripe_intent_id="").first()
    return attempt


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _intent_event(obj: dict[str, Any]) -> None:
    intent_id, status = _text(obj.get("id")), _text(obj.get("status"))
    attempt = _attempt_of(intent_id, _mapping(obj.get("metadata"))) if intent_id else None
    if attempt is None:
        logger.info("stripe event for a payment of no order here", extra={"intent": intent_id})
        return
    if status == "succeeded":
        # Whatever the attempt said: the charge is real (and final at Stripe).
        _apply_intent(attempt, gateway.Intent(id=intent_id, status=status))
        return
    # Anything else is settled by asking Stripe after this commits: the event may be
    # older than what Stripe holds now, and a failed intent is cancelled before its
    # attempt is declined (attempt_settle). A live request settles its own attempt.
    transaction.on_commit(partial(_settle_quietly, attempt.id), robust=True)


def _settle_quietly(attempt_id: uuid.UUID) -> None:
    try:
        attempt_settle(attempt_id=attempt_id)
    except gateway.GatewayUnavailable:
        logger.warning("attempt settling deferred: Stripe unavailable")  # the worker's


def _refund_event(obj: dict[str, Any]) -> None:
    """Stripe confirms a charge was refunded: a refund still owed is done."""
    intent_id = _text(obj.get("payment_intent"))
    # One a worker is settling right now is left to it: it records Stripe's answer.
    refund = (
        Refund.objects.select_for_update(skip_locked=True)
        .filter(payment_intent_id=intent_id)
        .first()
        if intent_id
        else None
    )
    if refund is None:
        # Refunded outside the app (Stripe's dashboard), or being settled right now.
        logger.info("charge refunded event not applied", extra={"payment_intent": intent_id})
        return
    if refund.status == Refund.Status.SUCCEEDED or obj.get("refunded") is not True:
        return
    refunds = _mapping(obj.get("refunds")).get("data")
    first = _mapping(refunds[0]) if isinstance(refunds, list) and refunds else {}
    refund.stripe_id = refund.stripe_id or _text(first.get("id")) or None
    refund.status = Refund.Status.SUCCEEDED
    refund.last_error = ""
    refund.updated_at = timezone.now()
    refund.save()
    REFUNDS_SETTLED.labels(outcome="succeeded").inc()
