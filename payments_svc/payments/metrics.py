"""payments_svc's own metrics: what refunds owed are doing, served by the worker.

    REFUNDS_SETTLED.labels(outcome="failed").inc()   # each call to Stripe for a refund
    WORKER_METRICS_COLLECTORS = ["payments.metrics.RefundCollector"]   # settings

RefundCollector reads the refunds table when scraped, so the gauges say how things stand
now (a restart loses nothing), while the counter says what the worker has been doing.
"""

from __future__ import annotations

from prometheus_client import Counter

from shared_lib.metrics import DatabaseGaugesCollector, age_seconds

REFUNDS_SETTLED = Counter(
    "ticketing_refund_tries",
    "Calls to Stripe for a refund owed, by outcome: succeeded, already_refunded, "
    "failed (Stripe refused for good: needs a person) or retry (an outage: tried again).",
    ["outcome"],
)


class RefundCollector(DatabaseGaugesCollector):
    """At scrape time: refunds that failed for good, refunds still owed, the oldest's age."""

    what = "refund"
    gauges = {
        "failed": (
            "ticketing_refunds_failed",
            "Refunds Stripe refused for good (status failed): each needs a person.",
        ),
        "owed": (
            "ticketing_refunds_owed",
            "Refunds owed and not yet accepted by Stripe (status pending).",
        ),
        "oldest_age": (
            "ticketing_refunds_oldest_owed_age_seconds",
            "Age of the oldest refund still owed (0 when there is none).",
        ),
    }

    def values(self) -> dict[str, float]:
        from django.db.models import Count, Min, Q

        from payments.models import Refund

        counts = Refund.objects.aggregate(
            failed=Count("id", filter=Q(status=Refund.Status.FAILED)),
            owed=Count("id", filter=Q(status=Refund.Status.PENDING)),
            oldest=Min("created_at", filter=Q(status=Refund.Status.PENDING)),
        )
        return {
            "failed": counts["failed"],
            "owed": counts["owed"],
            "oldest_age": age_seconds(counts["oldest"]),
        }
