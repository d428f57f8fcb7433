"""`celery -A expiration_worker worker`: order.created in, expiration.complete out, on time.

Each order's expiry is a task published with `eta=expiresAt`. The task queue is a quorum
queue on a topic exchange, so Celery uses RabbitMQ's native delayed delivery: the message
waits in the broker's celery_delayed_* queues (whole seconds), not in a worker's memory,
so a killed worker loses nothing and consumer_timeout never fires. It arrives at most a
second early and the worker holds it for that remainder (its eta header), then runs it.
"""

from functools import partial
from typing import Any

from kombu import Exchange, Queue, pools

from shared_lib.events.worker import EventConsumerStep, make_celery_app

TASK_QUEUE = "expiration.tasks"
# Due expiries handed to the pool per pass of the event loop (each a few microseconds).
MAX_TIMERS_PER_PASS = 1000


class ExpirationConsumerStep(EventConsumerStep):
    # Scheduling publishes to the delayed-delivery exchanges, which DelayedDelivery
    # declares: consume order events only once they exist.
    requires = ("celery.worker.consumer.delayed_delivery:DelayedDelivery",)

    def start(self, parent: Any) -> None:
        if getattr(parent, "hub", None) is not None:
            # The loop reads fire_timers when Evloop (the last step, after this) creates it.
            fire_due_timers_together(parent.hub)
        producer_for_every_thread(parent.controller.concurrency)
        super().start(parent)


def producer_for_every_thread(threads: int) -> None:
    """Every pool thread publishes through kombu's producer pool (broker.producer()),
    which holds 10 unless told otherwise: with more threads, the rest would wait for one
    and, past the wait's timeout, fail their expiry over a busy pool."""
    pools.set_limit(max(pools.get_limit(), threads))


def fire_due_timers_together(hub: Any) -> None:
    """kombu's event loop runs at most 10 due timers per pass, then polls for up to a
    second: a burst of expiries due together (one eta timer each) would come out ten at
    a time with gaps between. Up to MAX_TIMERS_PER_PASS run per pass instead."""
    hub.fire_timers = partial(type(hub).fire_timers, hub, max_timers=MAX_TIMERS_PER_PASS)


app = make_celery_app("expiration_worker", outbox=False, consumer_step=ExpirationConsumerStep)
app.conf.update(
    task_queues=[
        Queue(
            TASK_QUEUE,
            Exchange(TASK_QUEUE, type="topic", durable=True),
            routing_key=TASK_QUEUE,
            durable=True,
            queue_arguments={"x-queue-type": "quorum"},
        )
    ],
    task_default_queue=TASK_QUEUE,
    task_default_exchange=TASK_QUEUE,
    task_default_exchange_type="topic",
    task_default_routing_key=TASK_QUEUE,
    broker_native_delayed_delivery_queue_type="quorum",
    # A task is acked after it ran: a worker killed mid-task hands it back.
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    # No results are read anywhere.
    task_ignore_result=True,
    # Expiry tasks arrive up to a second before their eta and are held until then; each
    # holds a prefetch slot meanwhile, and a quorum queue cannot widen the window for
    # eta tasks, so the window (this times the pool's 32 threads) must cover every expiry due in
    # one second (bench/expiry).
    worker_prefetch_multiplier=32,
)
app.autodiscover_tasks(["expiration"])
