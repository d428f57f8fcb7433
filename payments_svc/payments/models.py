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

    Its id names its Stripe requests (idempotency keys, the PaymentIntent's metadata). The
    PaymentIntent is created unconfirmed and its id stored here before it is confirmed, so
    an attempt whose answer was lost is settled by looking its intent up: an attempt with
    no intent id was never confirmed, and so never charged.
    """

    class Status(models.TextChoices):
        PENDING = "pending"  # Stripe is being called
        SUCCEEDED = "succeeded"
        DECLINED = "declined"  # definitely not charged
        # Not known yet: a timeout or outage, or Stripe still processing. Settled by
        # retrieving the intent, never re-sent.
        UNKNOWN = "unknown"
        # The card asked its holder to authenticate (3-D Secure): the buyer's browser runs
        # the challenge with Stripe.js; Stripe's answer (webhook, GET, the worker) settles it.
        REQUIRES_ACTION = "requires_action"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    order = models.ForeignKey(OrderReplica, on_delete=models.PROTECT, related_name="attempts")
    token = models.CharField(
        max_length=255, help_text="What the buyer sent: a PaymentMethod id or a card token"
    )
    amount_cents = models.PositiveIntegerField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    stripe_intent_id = models.CharField(
        max_length=255,
        blank=True,
        db_index=True,  # how Stripe's webhooks find their attempt
        help_text="PaymentIntent id, stored before it is confirmed",
    )
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
    # The attempt's own id, so the id POST /api/payments answers is one id whether the
    # charge succeeded at once or after its cardholder authenticated.
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # At most one payment per order, whatever races: the database says so.
    order = models.OneToOneField(OrderReplica, on_delete=models.PROTECT, related_name="payment")
    attempt = models.OneToOneField(PaymentAttempt, on_delete=models.PROTECT)
    stripe_id = models.CharField(max_length=255, unique=True, help_text="PaymentIntent id")
    amount_cents = models.PositiveIntegerField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        # A staff action in the admin (shared_lib.staff), granted by a local superuser.
        permissions = [("refund_payment", "Can refund a payment")]

    def __str__(self) -> str:
        return f"payment {self.stripe_id}"


class Refund(models.Model):
    """A charge owed back because its order was cancelled (or staff refunded its payment):
    durable until Stripe agrees.

    Written in the transaction that learns it is owed (never calling Stripe there), then
    settled by the worker with back-off until it succeeds. A permanent refusal from Stripe
    is kept as FAILED for a person to look at (the admin, /metrics, `ticketing-dev status`).
    """

    class Status(models.TextChoices):
        PENDING = "pending"  # owed; tried again at next_attempt_at
        SUCCEEDED = "succeeded"  # given back (or Stripe says it already was)
        FAILED = "failed"  # Stripe refused for good: needs a person

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # One refund per charge: each charged attempt is one PaymentIntent.
    attempt = models.OneToOneField(PaymentAttempt, on_delete=models.PROTECT, related_name="refund")
    # The order's payment when this charge is it (an extra charge of the same order, which
    # an earlier attempt's payment beat, has none).
    payment = models.OneToOneField(
        Payment, on_delete=models.PROTECT, related_name="refund", null=True, blank=True
    )
    order = models.ForeignKey(OrderReplica, on_delete=models.PROTECT, related_name="refunds")
    payment_intent_id = models.CharField(max_length=255, unique=True)
    amount_cents = models.PositiveIntegerField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    stripe_id = models.CharField(
        max_length=255, unique=True, null=True, blank=True, help_text="Refund id"
    )
    tries = models.PositiveIntegerField(default=0, help_text="Calls to Stripe so far")
    next_attempt_at = models.DateTimeField(default=timezone.now)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            # The worker's query: what is owed and due.
            models.Index(
                fields=["next_attempt_at"],
                name="payments_refund_due",
                condition=models.Q(status="pending"),
            )
        ]

    def __str__(self) -> str:
        return f"refund of {self.payment_intent_id} ({self.status})"

    @property
    def idempotency_key(self) -> str:
        # Named after the charge: whichever row or run asks, Stripe refunds it once.
        return f"refund-{self.payment_intent_id}"


class StripeEvent(models.Model):
    """A Stripe webhook event applied: Stripe sends each at least once, we apply it once."""

    id = models.CharField(primary_key=True, max_length=255, help_text="Stripe's evt_ id")
    type = models.CharField(max_length=128)
    received_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-received_at"]

    def __str__(self) -> str:
        return f"{self.type} {self.id}"
