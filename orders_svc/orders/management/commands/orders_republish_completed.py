"""manage.py orders_republish_completed --by WHO

order.completed told again for every complete order, for a service that began consuming
it after they completed (docs/deploy.md). A staff action: who runs it says so (--by), and
it is logged and recorded (shared_lib.staff).
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from orders import services
from shared_lib.correlation import correlation_scope
from shared_lib.staff import Actor


class Command(BaseCommand):
    help = "Publish order.completed again for every complete order (a new subscriber's backfill)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--by", help="who runs it (recorded); required")

    def handle(self, *args: Any, by: str | None, **options: Any) -> None:
        if not by:
            raise CommandError("Say who runs it: --by <your name or email>")
        # One correlation id for the run: its log lines and every event it publishes.
        with correlation_scope(None) as correlation_id:
            told = services.order_completed_republish(actor=Actor(id=by, name=by))
        self.stdout.write(
            f"{told} order completion(s) told again (correlation id {correlation_id})"
        )
