"""WSGI entry point: gunicorn -c python:shared_lib.gunicorn_conf bare_site.wsgi."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bare_site.settings")
application = get_wsgi_application()
