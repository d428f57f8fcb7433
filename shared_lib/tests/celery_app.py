"""The demo service's worker: `celery -A tests.celery_app worker` (used by event_worker)."""

import os

from shared_lib.events.worker import make_celery_app

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
app = make_celery_app("tests")
