"""manage.py events_deadletters list | replay [--queue Q] [--id MESSAGE_ID ...] [--by WHO]

A replay is a staff action: who replays says so (--by, required), and each message
replayed is logged and recorded (shared_lib.staff) with them and when.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from shared_lib.events.deadletters import dead_letters, replay
from shared_lib.staff import Actor, record_staff_action

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = "List this service's dead-lettered events, or replay them onto their queues."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["list", "replay"])
        parser.add_argument("--queue", help="only this queue, e.g. orders.ticket.updated")
        parser.add_argument("--id", dest="ids", action="append", help="only this message id")
        parser.add_argument("--json", dest="as_json", action="store_true", help="JSON lines")
        parser.add_argument("--by", help="who replays (recorded); required to replay")

    def handle(
        self,
        *args: Any,
        action: str,
        queue: str | None,
        ids: list[str] | None,
        as_json: bool,
        by: str | None,
        **options: Any,
    ) -> None:
        service = settings.EVENTS_SERVICE
        try:
            if action == "list":
                letters = dead_letters(service=service, queue=queue)
                if ids:
                    letters = [letter for letter in letters if letter.message_id in ids]
                for letter in letters:
                    self.stdout.write(_describe(letter, as_json=as_json))
                # With --json, stdout is JSON lines only (for jq and scripts); the count
                # a person reads goes to stderr.
                (self.stderr if as_json else self.stdout).write(f"{len(letters)} dead letter(s)")
            else:
                if not by:
                    raise CommandError("Say who replays: --by <your name or email>")
                replayed = replay(
                    service=service, queue=queue, message_ids=set(ids) if ids else None
                )
                for letter in replayed:
                    # Logged first: the record below needs a database, which a service
                    # may not have (or may have lost), and the replay is done either way.
                    logger.info(
                        "dead letter replayed",
                        extra={"by": by, "queue": letter.queue, "message_id": letter.message_id},
                    )
                    self.stdout.write(f"replayed {letter.queue} {letter.message_id}")
                if settings.DATABASES:
                    actor = Actor(id=by, name=by)
                    with transaction.atomic():
                        for letter in replayed:
                            record_staff_action(
                                actor,
                                action="deadletter.replay",
                                target=letter.message_id,
                                detail={"queue": letter.queue, "subject": letter.subject},
                            )
                self.stdout.write(f"{len(replayed)} replayed")
        except ValueError as exc:
            raise CommandError(str(exc)) from exc


def _describe(letter: Any, *, as_json: bool) -> str:
    if as_json:
        return json.dumps(letter.__dict__, default=str)
    return (
        f"{letter.queue}  {letter.message_id}  {letter.subject}  "
        f"attempts={letter.attempts}  waits={letter.waits}  "
        f"dead_at={letter.dead_at}\n    error: {letter.error}"
    )
