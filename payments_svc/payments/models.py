import uuid

from django.db import models
from django.utils import timezone


class OrderReplica(models.Model):
    """payments_svc's copy of an orders_svc order, fed by order events in version order."""

    class Status(models.TextChoices):
        CREATED = "created"
        CANCELLED = "cancelled"
        COMPLETE = "complete"

    id = models.UUIDField(primary_key=True)  # the order's own id
    user_id = models.UUIDField(help_text="The buyer.")
    price = models.DecimalField(max_digits=8, decimal_places=2)
    status = models.CharField(max_length=16, choices=Status.choices)
    expires_at = models.DateTimeField()
    version = models.PositiveIntegerField()
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "order (replica)"

    def __str__(self) -> str:
        return f"order {self.id} ({self.status})"

    @property
    def amount_cents(self) -> int:
        # Stripe amounts are integer cents; prices have at most 2 decimals (contract).
        return int(self.price * 100)


class PaymentAttempt(models.Model):
    """One try at charging an order, recorded before Stripe is called.

    Its id is the Stripe idempotency key, so retrying an attempt whose outcome is unknown
    can never charge twice, while a new attempt (after a decline) can still succeed.
    """

    class Status(models.TextChoices):
        PENDING = "pending"  # Stripe is being called
        SUCCEEDED = "succeeded"
        DECLINED = "declined"  # definitely not charged
        UNKNOWN = "unknown"  # timeout or outage: retried under the same key

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    order = models.ForeignKey(OrderReplica, on_delete=models.PROTECT, related_name="attempts")
    token = models.CharField(max_length=255, help_text="Stripe PaymentMethod id")
    amount_cents = models.PositiveIntegerField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"attempt {self.id} ({self.status})"

    @property
    def idempotency_key(self) -> str:
        return f"payment-attempt-{self.id}"


class Payment(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # At most one payment per order, whatever races: the database says so.
    order = models.OneToOneField(OrderReplica, on_delete=models.PROTECT, related_name="payment")
    attempt = models.OneToOneField(PaymentAttempt, on_delete=models.PROTECT)
    stripe_id = models.CharField(max_length=255, unique=True, help_text="PaymentIntent id")
    amount_cents = models.PositiveIntegerField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"payment {self.stripe_id}"


class Refund(models.Model):
    """A charge given back because its order was cancelled (expired) while it was paid."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    payment = models.OneToOneField(Payment, on_delete=models.PROTECT, related_name="refund")
    stripe_id = models.CharField(max_length=255, unique=True, help_text="Refund id")
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"refund {self.stripe_id}"
