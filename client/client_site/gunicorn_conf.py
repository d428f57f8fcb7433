"""gunicorn settings of the web client: every service's (shared_lib.gunicorn_conf), threaded.

gunicorn -c python:client_site.gunicorn_conf client_site.wsgi
# WEB_CONCURRENCY processes, each serving WEB_THREADS pages at once (default 8).

A page spends most of its time waiting on the APIs behind the gateway. A sync worker would
idle through that wait with every other page queued behind it; a gthread worker serves
other pages meanwhile, and the GIL is free while a thread waits on a socket.
"""

import os

from shared_lib.gunicorn_conf import *  # noqa: F403 - every service's settings and hooks

worker_class = "gthread"
# A page costs a few ms of CPU and waits tens of ms on an API: 8 threads keep a process
# busy through those waits; more would only contend for the GIL (and hold more sockets).
threads = int(os.environ.get("WEB_THREADS", "8"))
