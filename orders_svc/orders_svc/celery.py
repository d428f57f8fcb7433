"""The worker: `celery -A orders_svc worker` keeps the ticket replica, reacts to expiry and
payment, and relays the outbox."""

from shared_lib.events.worker import make_celery_app

app = make_celery_app("orders_svc")
