"""gunicorn settings every service's web process uses.

gunicorn -c python:shared_lib.gunicorn_conf tickets_svc.wsgi
# GUNICORN_BIND (default 0.0.0.0:8000) and WEB_CONCURRENCY tune it per deployment.
"""

import os

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
# One worker per core plus one keeps the cores busy while a worker waits on the database,
# without oversubscribing; Kubernetes scales out with replicas rather than workers.
workers = int(os.environ.get("WEB_CONCURRENCY", (os.cpu_count() or 1) + 1))
# A request that runs longer than this is stuck; the gateway gives up at 60 s too.
timeout = 60
graceful_timeout = 20
# Keep-alive between the gateway and gunicorn; shorter than nginx's upstream idle time.
keepalive = 5
accesslog = "-"
errorlog = "-"
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")
# gunicorn >= 25 opens a control socket at one fixed path per user (~/.gunicorn/
# gunicorn.ctl), so several services on one machine would fight over it; nothing here
# uses gunicornc, so it stays off.
control_socket_disable = True
