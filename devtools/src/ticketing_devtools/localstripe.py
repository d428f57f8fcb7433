"""localstripe (the fake Stripe server from PyPI) with a store of its own.

    python -m ticketing_devtools.localstripe --store var/run/x/stripe.pickle --port 8420
    with running(tmp_path / "stripe.pickle") as api_base: ...   # a test's own, on a free port

Upstream keeps its state in one hard-coded file, /tmp/localstripe.pickle, rewritten on
every change and read back at start: every instance on a machine (a `make up`, a test
stack, the payments suite, a benchmark) would share it — one instance's charges showing
up in another's ledger, and two writing at once truncating it so the next start fails
("pickle data was truncated"). Here each instance gets its own file, written atomically.

Upstream also pickles the whole store on every change, so a charge cost it more the more
charges it had made (5 ms at first, 93 ms after 700: bench/README.md) and the fake, not
payments_svc, was what a load run measured. Here a change schedules one write a moment
later (FLUSH_AFTER_SECONDS), however many changes come meanwhile, and a clean stop writes
at once; a SIGKILL loses at most that moment of a fake's ledger.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import os
import pickle
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

FLUSH_AFTER_SECONDS = 0.5


def _use_store(path: Path) -> None:
    from localstripe import resources

    flush_pending = False

    def load(store: Any) -> None:
        try:
            with path.open("rb") as f:
                saved = pickle.load(f)  # noqa: S301 (our own file, written below)
        except FileNotFoundError:
            return
        store.clear()
        store.update(saved)

    def write(store: Any) -> None:
        partial = path.with_suffix(".partial")
        with partial.open("wb") as f:
            pickle.dump(dict(store), f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(partial, path)  # a reader never sees half a file

    def flush(store: Any) -> None:
        nonlocal flush_pending
        flush_pending = False
        write(store)

    def dump(store: Any) -> None:
        # Called by upstream after every change, inside its event loop (one thread), so
        # the write that runs later sees every change made until then.
        nonlocal flush_pending
        if flush_pending:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # outside the server: nothing to batch with
            write(store)
            return
        flush_pending = True
        loop.call_later(FLUSH_AFTER_SECONDS, flush, store)

    resources.Store.try_load_from_disk = load
    resources.Store.dump_to_disk = dump

    def flush_at_exit() -> None:
        if flush_pending:
            write(resources.store)

    # aiohttp turns SIGTERM and SIGINT into a clean exit, so this runs on every stop but
    # SIGKILL: the last changes are on disk for the next start.
    atexit.register(flush_at_exit)


def command(store: Path, port: int, *, from_scratch: bool = False) -> list[str]:
    """The command line that runs this module as a server."""
    args = [sys.executable, "-m", __name__, "--store", str(store), "--port", str(port)]
    return [*args, "--from-scratch"] if from_scratch else args


@contextmanager
def running(store: Path, *, from_scratch: bool = True) -> Iterator[str]:
    """A localstripe child process for a test, on a free port; yields its API base URL.

    Stopped with SIGTERM at the end (so it writes its store, as on any clean stop).
    """
    import requests

    from ticketing_devtools.stack import free_port

    port = free_port()
    process = subprocess.Popen(
        command(store, port, from_scratch=from_scratch),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                requests.get(f"{base}/v1/customers", timeout=1, auth=("sk_test_local", ""))
                break
            except requests.ConnectionError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("localstripe did not start") from None
                time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, required=True, help="this instance's state file")
    ours, rest = parser.parse_known_args(argv)
    ours.store.parent.mkdir(parents=True, exist_ok=True)
    _use_store(ours.store.resolve())
    # Imported here: command() and running() (tests, the stack) need none of aiohttp.
    from localstripe import server

    sys.argv = ["localstripe", *rest]  # --port, --from-scratch: localstripe's own options
    server.start()


if __name__ == "__main__":
    main()
