"""Periodic upkeep for the worker tests: records its calls, fails when told to."""

calls: list[str] = []
fail_next = {"flag": False}


def record() -> None:
    calls.append("record")
    if fail_next["flag"]:
        fail_next["flag"] = False
        raise RuntimeError("upkeep failed once")
