"""Order expiry with real workers, RabbitMQ's native delayed delivery and a throw-away vhost."""

import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from queue import Empty

import pytest
from kombu import Connection, Exchange

from shared_lib.events.broker import url_user
from shared_lib.testing.rabbitmq import broker_url, queue_depths, vhost_of
from shared_lib.testing.waiting import wait_for
from ticketing_devtools.devkeys import ensure_dev_secrets

# An expiry must never arrive before expiresAt. How soon after is a speed figure, measured
# by bench/expiry.py against raw delayed delivery, not asserted here: a loaded CI machine
# (or a worker restart) makes any fixed bound a flaky test.


def order_created(*, expires_in: float, order_id: str | None = None) -> dict:
    expires_at = datetime.now(UTC) + timedelta(seconds=expires_in)
    return {
        "id": str(uuid.uuid4()),
        "subject": "order.created",
        "occurredAt": datetime.now(UTC).isoformat(),
        "data": {
            "id": order_id or str(uuid.uuid4()),
            "version": 0,
            "status": "created",
            "userId": str(uuid.uuid4()),
            "expiresAt": expires_at.isoformat(),
            "ticket": {"id": str(uuid.uuid4()), "price": "10.00"},
        },
    }


def publish(url, envelope, correlation_id="corr-1"):
    # As orders_svc does: through its own broker user (the fixture's), named on the message.
    url = broker_url(url, user="orders", password=ensure_dev_secrets().broker_password("orders"))
    with Connection(url) as conn:
        conn.Producer().publish(
            envelope,
            exchange=Exchange("ticketing.events", type="topic", durable=True),
            routing_key="order.created",
            serializer="json",
            message_id=envelope["id"],
            headers={"correlation_id": correlation_id},
            delivery_mode=2,
            user_id="orders",
        )


def receive(expirations, timeout):
    message = expirations.get(timeout=timeout)
    message.ack()
    return message, datetime.now(UTC)


def expires_at(envelope):
    return datetime.fromisoformat(envelope["data"]["expiresAt"])


def assert_expires_on_time(envelope, message, received_at):
    """`message` is the expiry of `envelope`'s order, received no earlier than expiresAt."""
    assert message.payload["data"]["orderId"] == envelope["data"]["id"]
    assert received_at >= expires_at(envelope)


def messages_per_queue(vhost_url):
    return {queue.name: queue.total for queue in queue_depths(vhost_of(vhost_url))}


def test_an_order_expires_on_time_with_its_correlation_id(
    event_worker, rabbitmq_vhost, expirations
):
    event_worker()
    envelope = order_created(expires_in=2.5)

    publish(rabbitmq_vhost, envelope, correlation_id="req-abc")
    message, received_at = receive(expirations, timeout=15)

    body = message.payload
    assert body["subject"] == "expiration.complete"
    assert body["data"] == {"orderId": envelope["data"]["id"]}
    assert message.headers["correlation_id"] == "req-abc"
    assert received_at >= expires_at(envelope)


def test_an_order_already_past_its_expiry_expires_at_once(
    event_worker, rabbitmq_vhost, expirations
):
    event_worker()
    envelope = order_created(expires_in=-30)

    publish(rabbitmq_vhost, envelope)
    message, _ = receive(expirations, timeout=10)

    assert message.payload["data"]["orderId"] == envelope["data"]["id"]
    assert not any(n for name, n in messages_per_queue(rabbitmq_vhost).items() if "delayed" in name)


def test_an_order_with_less_than_a_second_left_expires_on_time_not_early(
    event_worker, rabbitmq_vhost, expirations
):
    # Native delayed delivery refuses a countdown under one second; the task waits instead.
    event_worker()
    envelope = order_created(expires_in=1.6)  # about 0.6 s left once the worker has it
    time.sleep(1.0)

    publish(rabbitmq_vhost, envelope)
    message, received_at = receive(expirations, timeout=10)

    assert_expires_on_time(envelope, message, received_at)


def test_orders_due_together_each_expire_on_time_with_their_own_correlation_id(
    event_worker, rabbitmq_vhost, expirations
):
    event_worker()
    envelopes = [order_created(expires_in=2.5 + index * 0.03) for index in range(3)]

    for index, envelope in enumerate(envelopes):
        publish(rabbitmq_vhost, envelope, correlation_id=f"req-{index}")
    received = [receive(expirations, timeout=15) for _ in envelopes]

    by_order = {m.payload["data"]["orderId"]: (m, at) for m, at in received}
    for index, envelope in enumerate(envelopes):
        message, received_at = by_order[envelope["data"]["id"]]
        assert message.headers["correlation_id"] == f"req-{index}"
        assert received_at >= expires_at(envelope)
    with pytest.raises(expirations.Empty):
        expirations.get(timeout=1)


def test_a_long_window_waits_in_the_broker_not_in_the_worker(event_worker, rabbitmq_vhost):
    event_worker()

    publish(rabbitmq_vhost, order_created(expires_in=3600))

    def parked():
        depths = messages_per_queue(rabbitmq_vhost)
        return sum(n for name, n in depths.items() if name.startswith("celery_delayed_"))

    deadline = time.monotonic() + 10
    while parked() != 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert parked() == 1
    assert messages_per_queue(rabbitmq_vhost)["expiration.tasks"] == 0


def test_a_worker_killed_after_scheduling_loses_no_expiry(
    event_worker, rabbitmq_vhost, expirations
):
    first = event_worker()
    envelope = order_created(expires_in=6)
    publish(rabbitmq_vhost, envelope)
    deadline = time.monotonic() + 10
    while "expiry scheduled" not in first.log() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "expiry scheduled" in first.log()

    first.kill()
    with pytest.raises(expirations.Empty):  # nothing may arrive while it is dead
        expirations.get(timeout=1)
    event_worker()
    message, received_at = receive(expirations, timeout=15)

    assert_expires_on_time(envelope, message, received_at)


def test_a_redelivered_order_created_expires_the_order_again_harmlessly(
    event_worker, rabbitmq_vhost, expirations
):
    # No database here: a duplicate schedules a second expiry, which orders_svc ignores.
    event_worker()
    envelope = order_created(expires_in=1)

    publish(rabbitmq_vhost, envelope)
    publish(rabbitmq_vhost, envelope)
    first, _ = receive(expirations, timeout=10)
    second, _ = receive(expirations, timeout=10)

    assert first.payload["data"] == second.payload["data"] == {"orderId": envelope["data"]["id"]}
    assert first.payload["id"] != second.payload["id"]


def test_the_liveness_check_reads_the_worker_heartbeat(event_worker):
    worker = event_worker()
    env = {**worker.env}

    alive = subprocess.run(
        [sys.executable, "-m", "shared_lib.events.worker", "--check-alive"], env=env, check=False
    )
    worker.kill()
    worker.heartbeat.unlink()
    dead = subprocess.run(
        [sys.executable, "-m", "shared_lib.events.worker", "--check-alive"], env=env, check=False
    )

    assert (alive.returncode, dead.returncode) == (0, 1)


def _parked(url, *, keep=False):
    """The messages in expiration.tasks.dead, taken off it (or, with `keep`, left there:
    unacknowledged, they go back to the queue when the connection closes)."""
    with Connection(url) as conn:
        queue = deadletters_queue(conn.channel())
        queue.declare()
        found = []
        while (message := queue.get(no_ack=not keep)) is not None:
            found.append(message)
        return found


def deadletters_queue(channel):
    from kombu import Queue

    from expiration.deadletters import DEAD_QUEUE

    return Queue(DEAD_QUEUE, durable=True)(channel)


def test_an_expiry_that_can_never_be_announced_is_parked_not_retried(
    event_worker, rabbitmq_vhost, expirations
):
    from expiration.tasks import expire_order
    from expiration_worker.celery import app

    assert expire_order.app is app  # routed to expiration.tasks, as the worker sends it
    worker = event_worker()

    # when: a task whose event the contract refuses (a bug or bad data, not an outage)
    with Connection(rabbitmq_vhost) as conn:
        expire_order.apply_async(
            args=["not-an-order-id"], kwargs={"correlation_id": "corr-9"}, connection=conn
        )

    # then: parked once with its error, announced never, and not retried
    parked = wait_for(lambda: _parked(rabbitmq_vhost), timeout=20)
    assert [m.payload for m in parked] == [
        {"orderId": "not-an-order-id", "correlationId": "corr-9", "dueAt": None}
    ]
    assert parked[0].headers["x-error"].startswith("ContractError")
    with pytest.raises(Empty):
        expirations.get(timeout=1)
    assert worker.log().count("expiry dead-lettered") == 1
    assert "Retry in" not in worker.log()


def test_a_parked_expiry_replays_and_is_announced(
    event_worker, rabbitmq_vhost, expirations, settings
):
    from expiration import deadletters

    event_worker()
    order_id = str(uuid.uuid4())
    deadletters.park(
        order_id=order_id, correlation_id="corr-7", due_at=None, error=OSError("broker gone")
    )

    parked = wait_for(lambda: _parked(rabbitmq_vhost, keep=True), timeout=10)
    # Sent as any other message of this service: confirmed, persistent, its sender named.
    assert parked[0].properties["user_id"] == url_user(settings.RABBITMQ_URL)
    assert parked[0].properties["correlation_id"] == "corr-7"
    assert parked[0].headers["x-error"] == "OSError: broker gone"

    assert deadletters.replay() == 1
    message, _ = receive(expirations, timeout=10)

    assert message.payload["data"] == {"orderId": order_id}
    assert message.headers["correlation_id"] == "corr-7"
    assert _parked(rabbitmq_vhost) == []
