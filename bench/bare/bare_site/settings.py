"""The bare Django project: the ceiling bench/http_api.py measures the services against.

One URL, one plain Django view returning a small JSON body: no database, no middleware,
no apps, no DRF. Served by the same gunicorn settings as every service
(`gunicorn -c python:shared_lib.gunicorn_conf bare_site.wsgi`, run from bench/bare), what
it answers per second is what Django and gunicorn alone cost on this machine.
"""

import os
import secrets

# Nothing is signed here; a fresh key per process is as good as any.
SECRET_KEY = os.environ.get("SECRET_KEY") or secrets.token_urlsafe(50)
DEBUG = False
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "[::1]"]
INSTALLED_APPS: list[str] = []
MIDDLEWARE: list[str] = []
ROOT_URLCONF = "bare_site.urls"
WSGI_APPLICATION = "bare_site.wsgi.application"
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True
TIME_ZONE = "UTC"
USE_I18N = False
