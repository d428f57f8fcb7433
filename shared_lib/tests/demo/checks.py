"""Readiness checks for HEALTH_CHECKS in the health tests."""


def passing_check() -> None:
    return None


def failing_check() -> None:
    raise RuntimeError("queue unreachable")
