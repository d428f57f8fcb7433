"""Reads of payments' own tables."""

from __future__ import annotations

import uuid

from django.db.models import Q

from payments.models import OrderReplica, PaymentAttempt


def order_exists_for(*, order_id: uuid.UUID, user_id: uuid.UUID) -> bool:
    """Whether `user_id` has this order: someone else's is as unknown as a missing one."""
    return OrderReplica.objects.filter(id=order_id, user_id=user_id).exists()


def attempt_get_for(*, payment_id: uuid.UUID, user_id: uuid.UUID) -> PaymentAttempt | None:
    """The payer's payment by the id POST /api/payments answered: its attempt's id (also
    the id of the Payment it makes), or the id of a Payment made before the two were one."""
    return (
        PaymentAttempt.objects.filter(Q(id=payment_id) | Q(payment__id=payment_id))
        .filter(order__user_id=user_id)
        .first()
    )
