"""payments_svc's own metrics: what refunds owed are doing, served by the worker.

    REFUNDS_SETTLED.labels(outcome="failed").inc()   # each call to Stripe for a refund
    WORKER_METRICS_COLLECTORS = ["payments.metrics.RefundCollector"]   # settings

RefundCollector reads the refunds table when scraped, so the gauges say how things stand
now (a restart loses nothing), while the counter says what the worker has been doing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client import Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)

REFUNDS_SETTLED = Counter(
    "ticketing_refund_tries",
    "Calls to Stripe for a refund owed, by outcome: succeeded, already_refunded, "
    "failed (Stripe refused for good: needs a person) or retry (an outage: tried again).",
    ["outcome"],
)


class RefundCollector(Collector):
    """At scrape time: refunds that failed for good, refunds still owed, the oldest's age."""

    def describe(self) -> list[GaugeMetricFamily]:
        return [
            GaugeMetricFamily("ticketing_refunds_failed", ""),
            GaugeMetricFamily("ticketing_refunds_owed", ""),
            GaugeMetricFamily("ticketing_refunds_oldest_owed_age_seconds", ""),
        ]

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from django.db import connection
        from django.db.models import Count, Min, Q
        from django.utils import timezone

        from payments.models import Refund

        try:
            counts = Refund.objects.aggregate(
                failed=Count("id", filter=Q(status=Refund.Status.FAILED)),
                owed=Count("id", filter=Q(status=Refund.Status.PENDING)),
                oldest=Min("created_at", filter=Q(status=Refund.Status.PENDING)),
            )
        except Exception:  # the database is down: no sample beats a wrong one
            logger.warning("refund metrics unavailable", exc_info=True)
            return
        finally:
            # A scrape runs in a thread of its own; its connection must not outlive it.
            if not connection.in_atomic_block:
                connection.close()
        oldest = counts["oldest"]
        age = (timezone.now() - oldest).total_seconds() if oldest is not None else 0.0
        yield GaugeMetricFamily(
            "ticketing_refunds_failed",
            "Refunds Stripe refused for good (status failed): each needs a person.",
            value=counts["failed"],
        )
        yield GaugeMetricFamily(
            "ticketing_refunds_owed",
            "Refunds owed and not yet accepted by Stripe (status pending).",
            value=counts["owed"],
        )
        yield GaugeMetricFamily(
            "ticketing_refunds_oldest_owed_age_seconds",
            "Age of the oldest refund still owed (0 when there is none).",
            value=max(age, 0.0),
        )
