"""The demo app under gunicorn (test_metrics runs it with shared_lib.gunicorn_conf)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
application = get_wsgi_application()
