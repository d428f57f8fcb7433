"""The worker: `celery -A tickets_svc worker` consumes order events and relays the outbox."""

from shared_lib.events.worker import make_celery_app

app = make_celery_app("tickets_svc")
