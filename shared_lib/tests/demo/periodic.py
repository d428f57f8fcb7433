"""Periodic upkeep for the worker tests: records when it was called, fails when told to."""

import time

calls: list[float] = []  # time.monotonic() of each call
fail_next = {"flag": False}


def record() -> None:
    calls.append(time.monotonic())
    if fail_next["flag"]:
        fail_next["flag"] = False
        raise RuntimeError("upkeep failed once")
