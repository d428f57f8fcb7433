import uuid

from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchVector, SearchVectorField
from django.db import models
from django.db.models import Q
from django.utils import timezone


class Ticket(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    title = models.CharField(max_length=200)
    price = models.DecimalField(max_digits=8, decimal_places=2)  # exact money, < 1,000,000
    user_id = models.UUIDField(help_text="The seller (auth_svc user id).")
    # Where "your ticket sold" goes: the seller's email as their session token said when
    # listing ("" for tickets listed before). A database default too, for the release before.
    user_email = models.EmailField(blank=True, default="", db_default="")
    order_id = models.UUIDField(
        null=True, blank=True, help_text="The order holding it (or, once sold, that bought it)."
    )
    sold_at = models.DateTimeField(
        null=True, blank=True, help_text="When its order completed: sold, for good."
    )
    withdrawn_at = models.DateTimeField(
        null=True, blank=True, help_text="When staff took it off sale (shared_lib.staff)."
    )
    # Up by one on every change; consumers apply ticket events in this order.
    version = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)
    # The title's words for GET /api/tickets?q=, as PostgreSQL's "simple" configuration
    # parses them (lower case, no stemming or stop words: a word matches as typed, or as
    # its start). Stored, so a search reads them instead of parsing every title it meets,
    # and ANALYZE keeps statistics of them for the planner.
    title_search = models.GeneratedField(
        expression=SearchVector("title", config="simple"),
        output_field=SearchVectorField(),
        db_persist=True,
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # GET /api/tickets: unreserved tickets, newest first, by cursor. The partial
            # index holds exactly those rows in that order, so a page is one range scan
            # whatever the table's size.
            models.Index(
                fields=["-created_at", "-id"],
                condition=Q(order_id__isnull=True),
                name="tickets_available_idx",
            ),
            # GET /api/tickets?q=: the same rows' title words. No pending list
            # (fastupdate): every search would read it whole until autovacuum merged it
            # (migration 0006 says what that cost).
            GinIndex(
                fields=["title_search"],
                condition=Q(order_id__isnull=True),
                name="tickets_available_search_idx",
                fastupdate=False,
            ),
            # A seller's listings, newest first (GET /api/tickets/mine).
            models.Index(fields=["user_id", "-created_at", "-id"], name="tickets_seller_idx"),
            # The ticket an order holds (order.completed names only the order).
            models.Index(
                fields=["order_id"], condition=Q(order_id__isnull=False), name="tickets_order_idx"
            ),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(price__gt=0), name="tickets_price_positive"),
        ]
        # A staff action in the admin, granted by a local superuser.
        permissions = [("withdraw_ticket", "Can take a ticket off sale")]

    def __str__(self) -> str:
        return self.title

    @property
    def is_reserved(self) -> bool:
        """Held by an order, or sold to one."""
        return self.order_id is not None

    @property
    def status(self) -> str:
        return ticket_status(
            order_id=self.order_id, sold_at=self.sold_at, withdrawn_at=self.withdrawn_at
        )


def ticket_status(*, order_id: object, sold_at: object, withdrawn_at: object) -> str:
    """`available`; `reserved` (an order holds it); `sold` (that order completed);
    `withdrawn` (staff took it off sale). An order that raced the withdrawal still wins:
    the ticket is reserved, then sold, or withdrawn again if the order is cancelled."""
    if sold_at is not None:
        return "sold"
    if order_id is not None:
        return "reserved"
    return "available" if withdrawn_at is None else "withdrawn"
