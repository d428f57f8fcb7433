"""Dead letters: list them with their errors, and replay them onto their queue.

    for letter in dead_letters(service="orders"): print(letter.queue, letter.error)
    replay(service="orders", message_ids={"..."})   # or every dead letter when None
    # CLI: python manage.py events_deadletters list | replay [--id ID ...] [--queue Q] --by WHO

Reading uses basic.get without acking, so listing changes nothing: the channel closes
and RabbitMQ puts every unacked message back. A replayed message is published to its
queue with its attempt count reset and confirmed before its dead copy is acked. It
keeps the sender the consumer recorded (`x-original-user`), so a replay is judged as the
original was: a legitimate event applies, a forged one is dead-lettered again. A letter
this service did not park itself is judged by its own `user_id`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from shared_lib.events import broker
from shared_lib.events.consumer import (
    ATTEMPTS_HEADER,
    DEAD_AT_HEADER,
    ERROR_HEADER,
    ORIGINAL_USER_HEADER,
    WAITS_HEADER,
    Rejected,
    header_count,
)
from shared_lib.events.registry import discover_handlers


@dataclass(frozen=True)
class DeadLetter:
    queue: str
    message_id: str
    subject: str
    error: str
    dead_at: str
    attempts: int  # failed deliveries
    waits: int  # NotYet / database-down deliveries
    body: Any


def _dead_queues(service: str, queue: str | None) -> list[str]:
    names = [broker.queue_name(service, subject) for subject in discover_handlers()]
    if queue is not None:
        if queue not in names:
            raise ValueError(f"{queue} is not one of {service}'s queues: {', '.join(names)}")
        names = [queue]
    return names


def _count(headers: dict[str, Any], name: str) -> int:
    try:
        return header_count(headers, name)
    except Rejected:  # parked for that very reason: listing still shows it
        return -1


def _letters(channel: Any, queue: str) -> Iterator[tuple[DeadLetter, Any]]:
    dead = broker.dead_queue(queue)(channel)
    dead.declare()
    while (message := dead.get(no_ack=False)) is not None:
        headers = message.headers or {}
        try:
            body = message.decode() if message.body else None
        except Exception:  # parked because it could not be decoded: show it as it is
            body = message.body
        letter = DeadLetter(
            queue=queue,
            message_id=str(message.properties.get("message_id", "")),
            subject=str(body.get("subject", "?")) if isinstance(body, dict) else "?",
            error=str(headers.get(ERROR_HEADER, "")),
            dead_at=str(headers.get(DEAD_AT_HEADER, "")),
            attempts=_count(headers, ATTEMPTS_HEADER),
            waits=_count(headers, WAITS_HEADER),
            body=body,
        )
        yield letter, message


def dead_letters(*, service: str, queue: str | None = None) -> list[DeadLetter]:
    found: list[DeadLetter] = []
    with broker.connection() as conn, conn.channel() as channel:
        for name in _dead_queues(service, queue):
            found.extend(letter for letter, _ in _letters(channel, name))
    return found  # closing the channel hands every message back, unacked


def replay(
    *, service: str, queue: str | None = None, message_ids: set[str] | None = None
) -> list[DeadLetter]:
    replayed: list[DeadLetter] = []
    with broker.connection() as conn, conn.channel() as channel, broker.producer() as pooled:
        for name in _dead_queues(service, queue):
            for letter, message in _letters(channel, name):
                if message_ids is not None and letter.message_id not in message_ids:
                    continue
                headers = dict(message.headers or {})
                user_id = message.properties.get("user_id")
                if user_id != broker.own_user() or ORIGINAL_USER_HEADER not in headers:
                    # Not parked by this service's consumer: nobody vouched for a sender.
                    headers[ORIGINAL_USER_HEADER] = str(user_id or "")
                headers["x-previous-error"] = headers.pop(ERROR_HEADER, "")
                headers[ATTEMPTS_HEADER] = headers[WAITS_HEADER] = 0
                raw = not isinstance(letter.body, dict)
                broker.send(
                    pooled,
                    body=letter.body,
                    content_type=message.content_type if raw else None,
                    content_encoding=message.content_encoding if raw else None,
                    routing_key=name,
                    message_id=letter.message_id,
                    correlation_id=str(headers.get("correlation_id") or ""),
                    headers=headers,
                )
                message.ack()
                replayed.append(letter)
    return replayed
