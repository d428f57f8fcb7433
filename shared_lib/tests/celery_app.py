"""The demo service's worker: `celery -A tests.celery_app worker` (used by event_worker)."""

import os
from collections.abc import Iterable

from shared_lib.events.contracts import Subject
from shared_lib.events.worker import EventConsumerStep, make_celery_app

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

# The demo plays every service, so contracts.CONSUMERS does not name it; this is what it
# consumes instead. DEMO_DECLARED (comma-separated subjects) replaces it, so that a test
# can start a worker whose handlers disagree with its declaration.
DEMO_CONSUMES = (
    Subject.TICKET_CREATED,
    Subject.TICKET_UPDATED,
    Subject.ORDER_CREATED,
    Subject.ORDER_CANCELLED,
)


class DemoConsumerStep(EventConsumerStep):
    def declared_subjects(self, service: str) -> Iterable[Subject]:
        declared = os.environ.get("DEMO_DECLARED")
        if declared is None:
            return DEMO_CONSUMES
        return [Subject(name) for name in declared.split(",") if name]


app = make_celery_app("tests", consumer_step=DemoConsumerStep)
