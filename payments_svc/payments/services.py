"""Every payments write and rule: paying exactly once, refunds, the order replica."""

from __future__ import annotations

import logging
import re
import uuid
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from payments import gateway
from payments.models import OrderReplica, Payment, PaymentAttempt, Refund
from shared_lib.errors import BadRequest, NotFound, PaymentRequired, ServiceUnavailable
from shared_lib.events import Subject, publish
from shared_lib.events.versioning import Applied, apply_to_replica
from shared_lib.ids import invalid_message, parse_id, required_message

logger = logging.getLogger(__name__)

ORDER_ID_REQUIRED = required_message("orderId")  # "OrderId must be provided"
ORDER_ID_INVALID = invalid_message("orderId")  # "OrderId must be a valid id"
TOKEN_INVALID = "Token must be a Stripe PaymentMethod id"  # noqa: S105 (a message)
ORDER_CANCELLED = "Cannot pay for a cancelled order"
ORDER_EXPIRED = "Order has expired"
ORDER_PAID = "Order is already paid"
PROVIDER_UNAVAILABLE = "The payment provider is unavailable; please try again"

# What Stripe.js Elements produces: a PaymentMethod id.
TOKEN_PATTERN = r"^pm_[A-Za-z0-9_]{1,250}$"  # noqa: S105 (a pattern, not a secret)
_TOKEN = re.compile(TOKEN_PATTERN)
# An attempt still pending after this long died with its process; it is then retried
# under its own idempotency key. Longer than Stripe's timeout, so it is never live.
STALE_ATTEMPT = timedelta(minutes=2)


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
        unsettled = attempts.filter(
            status__in=[PaymentAttempt.Status.UNKNOWN, PaymentAttempt.Status.PENDING]
        ).first()
        if unsettled is not None:
            # Its outcome was never learned (timeout, crash): try it again under the same
            # idempotency key and with the same card, so Stripe answers with the first
            # result instead of charging a second time.
            unsettled.status = PaymentAttempt.Status.PENDING
            unsettled.updated_at = now
            unsettled.save(update_fields=["status", "updated_at"])
            return unsettled
        return PaymentAttempt.objects.create(
            order=order, token=token, amount_cents=order.amount_cents
        )


def _settle(attempt: PaymentAttempt, status: str, error: str = "") -> None:
    attempt.status = status
    attempt.error = error
    attempt.updated_at = timezone.now()
    attempt.save(update_fields=["status", "error", "updated_at"])


def _charge(attempt: PaymentAttempt) -> str:
    """Call Stripe for this attempt under its idempotency key; settle it if refused.

    Raises CardDeclined (attempt declined) or GatewayUnavailable (attempt unknown).
    """
    try:
        return gateway.stripe_charge(
            amount_cents=attempt.amount_cents,
            token=attempt.token,
            idempotency_key=attempt.idempotency_key,
            metadata={"orderId": str(attempt.order_id), "attemptId": str(attempt.id)},
        )
    except gateway.CardDeclined as exc:
        _settle(attempt, PaymentAttempt.Status.DECLINED, exc.message)
        raise
    except gateway.GatewayUnavailable as exc:
        _settle(attempt, PaymentAttempt.Status.UNKNOWN, str(exc))
        raise


def _record(attempt: PaymentAttempt, stripe_id: str) -> tuple[Payment, OrderReplica]:
    """Store the charge and announce it, in one transaction."""
    with transaction.atomic():
        order = OrderReplica.objects.select_for_update().get(id=attempt.order_id)
        _settle(attempt, PaymentAttempt.Status.SUCCEEDED)
        payment = Payment.objects.create(
            order=order, attempt=attempt, stripe_id=stripe_id, amount_cents=attempt.amount_cents
        )
        publish(
            Subject.PAYMENT_CREATED,
            {"id": payment.id, "orderId": order.id, "stripeId": stripe_id},
        )
    return payment, order


def payment_create(*, user_id: uuid.UUID, order_id: Any, token: Any) -> Payment:
    """Charge the buyer for their order, exactly once (DESIGN.md §5)."""
    attempt = _start_attempt(
        user_id=user_id, order_id=parse_id(order_id, field="orderId"), token=token
    )
    try:
        # No lock is held while Stripe works: the pending attempt keeps others out.
        stripe_id = _charge(attempt)
    except gateway.CardDeclined as exc:
        raise PaymentRequired(exc.message) from None
    except gateway.GatewayUnavailable:
        raise ServiceUnavailable(PROVIDER_UNAVAILABLE) from None
    payment, order = _record(attempt, stripe_id)
    if order.status == OrderReplica.Status.CANCELLED:
        # Expired while the card was being charged: the buyer never pays for a ticket
        # they did not get. orders_svc ignores the payment; the money goes back now, or
        # (Stripe down) on the worker's next reconciliation, which finds it owed.
        try:
            payment_refund(payment_id=payment.id)
        except gateway.GatewayUnavailable:
            logger.warning("refund deferred: Stripe unavailable", extra={"order_id": str(order.id)})
        raise BadRequest(ORDER_CANCELLED)
    return payment


def payment_refund(*, payment_id: uuid.UUID) -> Refund:
    """Refund a payment once (a second call returns the first refund)."""
    with transaction.atomic():
        payment = Payment.objects.select_for_update().get(id=payment_id)
        existing = Refund.objects.filter(payment=payment).first()
        if existing is not None:
            return existing
        stripe_id = gateway.stripe_refund(
            payment_intent_id=payment.stripe_id, idempotency_key=f"refund-{payment.id}"
        )
        refund = Refund.objects.create(payment=payment, stripe_id=stripe_id)
    logger.warning(
        "payment refunded: its order was cancelled",
        extra={"order_id": str(payment.order_id), "payment_id": str(payment.id)},
    )
    return refund


def order_settle_cancelled(*, order_id: uuid.UUID) -> None:
    """Give back whatever a cancelled order was charged, including charges we never
    heard back about.

    An attempt left unknown (a timeout, a lost answer) or pending past STALE_ATTEMPT (its
    process died) is sent again under its idempotency key: Stripe then answers with the
    charge it already made, if any, instead of charging again. What succeeded is recorded
    and refunded. Raises GatewayUnavailable while Stripe is down (the caller retries).
    """
    stale = timezone.now() - STALE_ATTEMPT
    unsettled = PaymentAttempt.objects.filter(order_id=order_id).filter(
        Q(status=PaymentAttempt.Status.UNKNOWN)
        | Q(status=PaymentAttempt.Status.PENDING, updated_at__lte=stale)
    )
    for attempt in unsettled:
        try:
            stripe_id = _charge(attempt)
        except gateway.CardDeclined:
            continue  # never charged: nothing to give back
        if not Payment.objects.filter(order_id=order_id).exists():
            _record(attempt, stripe_id)
        else:  # an earlier attempt already holds the order's payment: refund this one too
            gateway.stripe_refund(
                payment_intent_id=stripe_id, idempotency_key=f"refund-attempt-{attempt.id}"
            )
            _settle(attempt, PaymentAttempt.Status.SUCCEEDED, "refunded: order already paid")
    payment = Payment.objects.filter(order_id=order_id).first()
    if payment is not None:
        payment_refund(payment_id=payment.id)


def payments_reconcile() -> int:
    """Settle every cancelled order still owing money back (the worker runs this
    periodically, so a refund that met a Stripe outage is not forgotten)."""
    stale = timezone.now() - STALE_ATTEMPT
    owing = OrderReplica.objects.filter(status=OrderReplica.Status.CANCELLED).filter(
        Q(payment__isnull=False, payment__refund__isnull=True)
        | Q(attempts__status=PaymentAttempt.Status.UNKNOWN)
        | Q(attempts__status=PaymentAttempt.Status.PENDING, attempts__updated_at__lte=stale)
    )
    settled = 0
    for order_id in owing.values_list("id", flat=True).distinct():
        try:
            order_settle_cancelled(order_id=order_id)
            settled += 1
        except gateway.GatewayUnavailable:
            logger.warning("reconciliation deferred: Stripe unavailable")
            break  # the next run tries again
    return settled


def order_replica_apply(*, order_id: uuid.UUID, version: int, **fields: Any) -> Applied:
    """Bring the order replica to `version` (created with every field; later only status)."""
    return apply_to_replica(OrderReplica, id=order_id, version=version, fields=fields)


def order_cancelled_apply(*, order_id: uuid.UUID, version: int) -> Applied:
    outcome = order_replica_apply(
        order_id=order_id, version=version, status=OrderReplica.Status.CANCELLED
    )
    # Paid (or maybe paid), then cancelled: the expiry won the race with the charge.
    # A Stripe outage fails the handler, which is retried; reconciliation backs it up.
    order_settle_cancelled(order_id=order_id)
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
