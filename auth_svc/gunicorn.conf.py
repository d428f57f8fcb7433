"""gunicorn settings for auth_svc (and the pattern every service's web process follows)."""

import os

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
# Password hashing is CPU-bound; one worker per core plus one keeps cores busy without
# oversubscribing (the Argon2 hasher also takes ~100 MiB per concurrent hash).
workers = int(os.environ.get("WEB_CONCURRENCY", (os.cpu_count() or 1) + 1))
# A request that runs longer than this is stuck; the gateway gives up at 60 s too.
timeout = 60
graceful_timeout = 20
accesslog = "-"
errorlog = "-"
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")
# gunicorn >= 25 opens a control socket at one fixed path per user (~/.gunicorn/
# gunicorn.ctl), so several services on one machine would fight over it; nothing here
# uses gunicornc, so it stays off.
control_socket_disable = True
