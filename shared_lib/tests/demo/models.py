from django.db import models


class Visit(models.Model):
    """One row per request a demo view handled: proof that a view ran (or did not)."""

    view = models.CharField(max_length=50)

    def __str__(self) -> str:
        return self.view


class TicketReplica(models.Model):
    """A versioned replica fed by ticket events, as orders_svc keeps one."""

    id = models.UUIDField(primary_key=True)
    title = models.CharField(max_length=200)
    price = models.DecimalField(max_digits=8, decimal_places=2)
    user_id = models.UUIDField()
    order_id = models.UUIDField(null=True)
    version = models.IntegerField()

    def __str__(self) -> str:
        return f"{self.title} v{self.version}"


class Effect(models.Model):
    """One row per handler side effect; no unique key, so a double effect shows as two rows."""

    event_id = models.UUIDField()
    subject = models.CharField(max_length=64)
    aggregate_id = models.UUIDField()
    version = models.IntegerField(null=True)

    def __str__(self) -> str:
        return f"{self.subject} {self.event_id}"
