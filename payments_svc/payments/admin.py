from django.contrib import admin

from payments.models import OrderReplica, Payment, PaymentAttempt, Refund
from shared_lib.admin import ReadOnlyAdmin


@admin.register(Payment)
class PaymentAdmin(ReadOnlyAdmin):
    list_display = ["stripe_id", "order", "amount_cents", "refunded", "created_at"]
    list_filter = [("refund", admin.EmptyFieldListFilter), "created_at"]
    search_fields = ["=id", "=stripe_id", "=order__id", "=order__user_id"]
    list_select_related = ["order", "refund"]
    date_hierarchy = "created_at"

    @admin.display(boolean=True)
    def refunded(self, obj: Payment) -> bool:
        return hasattr(obj, "refund")


@admin.register(Refund)
class RefundAdmin(ReadOnlyAdmin):
    list_display = ["stripe_id", "payment", "created_at"]
    search_fields = ["=stripe_id", "=payment__stripe_id", "=payment__order__id"]


@admin.register(PaymentAttempt)
class PaymentAttemptAdmin(ReadOnlyAdmin):
    list_display = ["id", "order", "status", "amount_cents", "error", "created_at"]
    list_filter = ["status", "created_at"]
    search_fields = ["=id", "=order__id"]


@admin.register(OrderReplica)
class OrderReplicaAdmin(ReadOnlyAdmin):
    list_display = ["id", "status", "price", "user_id", "expires_at", "version"]
    list_filter = ["status"]
    search_fields = ["=id", "=user_id"]
