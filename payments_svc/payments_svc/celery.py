"""The worker: `celery -A payments_svc worker` keeps the order replica, refunds charges for
orders cancelled meanwhile, and relays the outbox."""

from shared_lib.events.worker import make_celery_app

app = make_celery_app("payments_svc")
