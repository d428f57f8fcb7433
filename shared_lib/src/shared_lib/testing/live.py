"""Races against a live server: real threads, real connections, the test database.

    def test_one_winner(race_server, make_token):             # the plugin's fixture
        answers = race(50, lambda i: requests.post(f"{race_server}/api/orders", ...))

Django's own live server keeps a listen backlog of 10 and daemon request threads; this
one takes every racer at once and joins its threads on shutdown, so no request still
holds a database connection when the test database is flushed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from django.contrib.staticfiles.handlers import StaticFilesHandler
from django.core.servers.basehttp import ThreadedWSGIServer
from django.test.testcases import LiveServerThread, QuietWSGIRequestHandler

T = TypeVar("T")


class OneRequestPerConnection(QuietWSGIRequestHandler):
    # No keep-alive: the request thread ends, closing its database connection, as soon as
    # its response is out, so shutting the server down never waits on an idle client.
    def parse_request(self) -> bool:
        parsed = super().parse_request()
        self.close_connection = True
        return parsed


class WideBacklogServer(ThreadedWSGIServer):
    # Every racer connects at the same instant; with the stock backlog of 10 the kernel
    # resets the overflow and the race never reaches the database.
    request_queue_size = 128
    daemon_threads = False  # joined on shutdown (see the module docstring)


class WideBacklogServerThread(LiveServerThread):
    server_class = WideBacklogServer

    def _create_server(self, connections_override: Any = None) -> WideBacklogServer:
        return self.server_class(
            (self.host, self.port),
            OneRequestPerConnection,
            allow_reuse_address=False,
            connections_override=connections_override,
        )


def serve() -> Iterator[str]:
    """Run the live server for the duration of a fixture; yields its base URL."""
    thread = WideBacklogServerThread("localhost", StaticFilesHandler)
    thread.daemon = True
    thread.start()
    thread.is_ready.wait()
    if thread.error:
        raise thread.error
    yield f"http://localhost:{thread.port}"
    thread.terminate()


def race(count: int, action: Callable[[int], T]) -> list[T]:
    """Run action(index) in `count` threads released together by a barrier."""
    barrier = threading.Barrier(count)

    def run(index: int) -> T:
        barrier.wait(timeout=30)
        return action(index)

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(run, range(count)))
