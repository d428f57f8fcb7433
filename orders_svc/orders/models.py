import uuid

from django.db import models
from django.db.models import Q
from django.utils import timezone


class TicketReplica(models.Model):
    """orders_svc's copy of a tickets_svc ticket, fed by ticket events in version order."""

    id = models.UUIDField(primary_key=True)  # the ticket's own id
    title = models.CharField(max_length=200)
    price = models.DecimalField(max_digits=8, decimal_places=2)
    user_id = models.UUIDField(help_text="The seller.")
    # False once staff took it off sale (ticket.updated's onSale). A database default too,
    # so that a process still running the previous release can insert.
    on_sale = models.BooleanField(default=True, db_default=True)
    version = models.PositiveIntegerField()
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "ticket (replica)"

    def __str__(self) -> str:
        return self.title


class Order(models.Model):
    class Status(models.TextChoices):
        CREATED = "created"
        CANCELLED = "cancelled"
        COMPLETE = "complete"

    # The state machine: the only moves an order can make (services enforce it).
    TRANSITIONS: dict[str, frozenset[str]] = {
        Status.CREATED: frozenset({Status.CANCELLED, Status.COMPLETE}),
        Status.CANCELLED: frozenset(),
        Status.COMPLETE: frozenset(),
    }
    ACTIVE = (Status.CREATED, Status.COMPLETE)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user_id = models.UUIDField(help_text="The buyer.")
    # Where the receipt goes: the buyer's email as their session token said when ordering
    # ("" for orders made before receipts). A database default too, for the release before.
    user_email = models.EmailField(blank=True, default="", db_default="")
    ticket = models.ForeignKey(TicketReplica, on_delete=models.PROTECT, related_name="orders")
    # What the buyer pays, fixed when the order is made: a seller's later edit (which can
    # reach the replica after the order) changes the title shown, never the price.
    price = models.DecimalField(max_digits=8, decimal_places=2)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.CREATED)
    expires_at = models.DateTimeField()
    version = models.PositiveIntegerField(default=0)  # up by one on every change
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # The reservation lock: at most one active (created or complete) order per
            # ticket, decided by the database however many buyers race for it.
            models.UniqueConstraint(
                fields=["ticket"],
                condition=Q(status__in=["created", "complete"]),
                name="orders_one_active_order_per_ticket",
            ),
        ]
        indexes = [
            # GET /api/orders: one buyer's orders, newest first, by cursor.
            models.Index(fields=["user_id", "-created_at", "-id"], name="orders_by_buyer_idx"),
        ]
        # Staff actions in the admin (shared_lib.staff), granted by a local superuser.
        permissions = [("cancel_order", "Can cancel an unpaid order")]

    def __str__(self) -> str:
        return f"order {self.id} ({self.status})"

    def can_become(self, status: str) -> bool:
        return status in self.TRANSITIONS[self.status]
