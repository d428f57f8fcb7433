"""WSGI entry point: gunicorn orders_svc.wsgi."""

import os

from django.core.wsgi import get_wsgi_application

from shared_lib.tracing import setup_tracing

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orders_svc.settings")
# Here, in each gunicorn worker after the fork, before the middleware is loaded.
setup_tracing("orders")
application = get_wsgi_application()
