from django.contrib import admin

from payments import services
from payments.models import OrderReplica, Payment, PaymentAttempt, Refund, StripeEvent
from shared_lib.admin import ReadOnlyAdmin, staff_action
from shared_lib.errors import BadRequest
from shared_lib.staff import Actor


def _refund(payment: Payment, actor: Actor) -> str:
    refund, owed_now = services.payment_refund_by_staff(payment_id=payment.id, actor=actor)
    if owed_now:
        return "refund owed; the worker sends it to Stripe within a minute (see Refunds)"
    if refund.status == Refund.Status.FAILED:
        raise BadRequest(f"its refund failed earlier: {refund.last_error}")
    if refund.status == Refund.Status.SUCCEEDED:
        return "was refunded already"
    return "its refund is owed already"


@admin.register(Payment)
class PaymentAdmin(ReadOnlyAdmin):
    list_display = ["stripe_id", "order", "amount_cents", "refund_status", "created_at"]
    list_filter = ["refund__status", "created_at"]
    search_fields = ["=id", "=stripe_id", "=order__id", "=order__user_id"]
    list_select_related = ["order", "refund"]
    date_hierarchy = "created_at"
    actions = [
        staff_action(
            permission="payments.refund_payment",
            description="Refund the selected payments (the sale stands)",
            apply=_refund,
        )
    ]

    @admin.display(description="refund")
    def refund_status(self, obj: Payment) -> str:
        refund = getattr(obj, "refund", None)
        return refund.status if refund is not None else "-"


@admin.register(Refund)
class RefundAdmin(ReadOnlyAdmin):
    """Failed refunds (Stripe refused for good) are what a person must look at: filter by
    status; last_error says what Stripe answered."""

    list_display = [
        "payment_intent_id",
        "order",
        "amount_cents",
        "status",
        "tries",
        "next_attempt_at",
        "last_error",
        "stripe_id",
        "created_at",
    ]
    list_filter = ["status", "created_at"]
    search_fields = ["=stripe_id", "=payment_intent_id", "=order__id", "=attempt__id"]
    list_select_related = ["order"]


@admin.register(PaymentAttempt)
class PaymentAttemptAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "order",
        "status",
        "amount_cents",
        "stripe_intent_id",
        "error",
        "created_at",
    ]
    list_filter = ["status", "created_at"]
    search_fields = ["=id", "=order__id", "=stripe_intent_id"]


@admin.register(OrderReplica)
class OrderReplicaAdmin(ReadOnlyAdmin):
    list_display = ["id", "status", "price", "user_id", "expires_at", "version"]
    list_filter = ["status"]
    search_fields = ["=id", "=user_id"]


@admin.register(StripeEvent)
class StripeEventAdmin(ReadOnlyAdmin):
    """Stripe's webhook events as they were applied (each id once)."""

    list_display = ["id", "type", "received_at"]
    list_filter = ["type", "received_at"]
    search_fields = ["=id"]
