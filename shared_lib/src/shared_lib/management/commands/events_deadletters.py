"""manage.py events_deadletters list | replay [--queue Q] [--id MESSAGE_ID ...]"""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from shared_lib.events.deadletters import dead_letters, replay


class Command(BaseCommand):
    help = "List this service's dead-lettered events, or replay them onto their queues."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["list", "replay"])
        parser.add_argument("--queue", help="only this queue, e.g. orders.ticket.updated")
        parser.add_argument("--id", dest="ids", action="append", help="only this message id")
        parser.add_argument("--json", dest="as_json", action="store_true", help="JSON lines")

    def handle(
        self,
        *args: Any,
        action: str,
        queue: str | None,
        ids: list[str] | None,
        as_json: bool,
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
                replayed = replay(
                    service=service, queue=queue, message_ids=set(ids) if ids else None
                )
                for letter in replayed:
                    self.stdout.write(f"replayed {letter.queue} {letter.message_id}")
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
