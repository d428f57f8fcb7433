import pytest
from kombu import Connection, Exchange, Queue


@pytest.fixture
def expirations(rabbitmq_vhost):
    """A queue of our own bound to expiration.complete: what the worker announces."""
    with Connection(rabbitmq_vhost) as conn:
        queue = Queue(
            "test.expiration.complete",
            Exchange("ticketing.events", type="topic", durable=True),
            routing_key="expiration.complete",
            durable=False,
            auto_delete=False,
        )
        queue(conn.channel()).declare()
        queue(conn.channel()).purge()
        with conn.SimpleQueue(queue) as simple:
            yield simple
