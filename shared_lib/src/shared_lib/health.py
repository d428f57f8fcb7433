"""Liveness and readiness endpoints for Kubernetes probes and the local supervisor.

    MIDDLEWARE = ["shared_lib.health.HealthMiddleware", ...]   # first in the list
    HEALTH_CHECKS = {"database": "shared_lib.health.check_database",
                     "broker": "shared_lib.health.check_broker"}

`/healthz` answers 200 while the process serves requests; `/readyz` runs each check and
answers 200, or 503 in the error shape naming what failed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.conf import settings
from django.db import connections
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.module_loading import import_string

logger = logging.getLogger(__name__)

LIVENESS_PATH = "/healthz"
READINESS_PATH = "/readyz"


def check_database() -> None:
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT 1")


def check_redis() -> None:
    from shared_lib.redis_client import redis_client

    redis_client().ping()


def check_broker() -> None:
    from shared_lib.events.broker import connection

    with connection() as conn:
        conn.ensure_connection(max_retries=1, timeout=3)


def run_checks() -> dict[str, str]:
    results: dict[str, str] = {}
    for name, dotted in settings.HEALTH_CHECKS.items():
        try:
            import_string(dotted)()
        except Exception:  # a probe reports any failure, it never raises
            logger.warning("readiness check %s failed", name, exc_info=True)
            results[name] = "error"
        else:
            results[name] = "ok"
    return results


class HealthMiddleware:
    """Answers the probes before host validation, sessions or auth run.

    It goes first in MIDDLEWARE because kubelet probes use the pod IP as Host, which
    ALLOWED_HOSTS rightly does not list.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        path = request.path_info.rstrip("/")
        if path == LIVENESS_PATH:
            return JsonResponse({"status": "ok"})
        if path == READINESS_PATH:
            checks = run_checks()
            failed = [name for name, state in checks.items() if state != "ok"]
            if failed:
                # Imported here: shared_lib.errors needs Django's settings, and this module's
                # paths are read without them (the deploy checks).
                from shared_lib.errors import error_body

                body = {**error_body(f"Not ready: {', '.join(failed)}"), "checks": checks}
                return JsonResponse(body, status=503)
            return JsonResponse({"status": "ok", "checks": checks})
        return self.get_response(request)
