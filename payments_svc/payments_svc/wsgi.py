"""WSGI entry point: gunicorn payments_svc.wsgi."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "payments_svc.settings")
application = get_wsgi_application()
