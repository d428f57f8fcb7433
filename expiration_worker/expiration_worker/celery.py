"""`celery -A expiration_worker worker`: order.created in, expiration.complete out, on time.

Each order's expiry is a task published with `eta=expiresAt`. The task queue is a quorum
queue on a topic exchange, so Celery uses RabbitMQ's native delayed delivery: the message
waits in the broker's celery_delayed_* queues (whole seconds), not in a worker's memory,
so a killed worker loses nothing and consumer_timeout never fires. It arrives at most a
second early and the worker holds it for that remainder (its eta header), then runs it.
"""

from kombu import Exchange, Queue

from shared_lib.events.worker import EventConsumerStep, make_celery_app

TASK_QUEUE = "expiration.tasks"


class ExpirationConsumerStep(EventConsumerStep):
    # Scheduling publishes to the delayed-delivery exchanges, which DelayedDelivery
    # declares: consume order events only once they exist.
    requires = ("celery.worker.consumer.delayed_delivery:DelayedDelivery",)


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
    # eta tasks, so the window must cover every expiry due in one second (bench/expiry).
    worker_prefetch_multiplier=128,
)
app.autodiscover_tasks(["expiration"])
