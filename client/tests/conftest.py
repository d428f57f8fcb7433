"""The client's tests run against the whole system (the `stack` fixture), in-process
through Django's test client and in Debian's Chromium driven by Playwright."""

import re
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from ticketing_devtools.backing import ensure_chromium
from ticketing_devtools.catalog import VAR_DIR
from ticketing_devtools.testing import StackSettings

# Long enough to sign in, buy and pay in a browser; short enough for the expiry test to
# wait out.
EXPIRATION_WINDOW_SECONDS = 15
PASSWORD = "a-long-secret-phrase"
SCREENSHOTS = VAR_DIR / "test-reports" / "screenshots"

# What this machine's closed network needs: without the background-networking flags
# Chromium keeps dialling Google's hosts; --no-sandbox because tests run as root here.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def stack_settings():
    return StackSettings(env={"EXPIRATION_WINDOW_SECONDS": str(EXPIRATION_WINDOW_SECONDS)})


@pytest.fixture(autouse=True)
def _api_through_the_stack(request, settings):
    # In-process page tests call the running system, like the client process does.
    if "stack" in request.fixturenames:
        stack = request.getfixturevalue("stack")
        settings.API_BASE_URL = stack.url


@pytest.fixture(scope="session")
def browser() -> Browser:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=ensure_chromium(), headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)


@pytest.fixture
def new_page(browser, stack, request):
    """Pages in fresh browser contexts (one per person); a failed test leaves a
    screenshot of each under var/test-reports/screenshots/."""
    contexts = []

    def make() -> Page:
        context = browser.new_context(base_url=stack.url, viewport={"width": 1200, "height": 900})
        context.set_default_timeout(15_000)
        contexts.append(context)
        return context.new_page()

    yield make
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.nodeid)
        for number, context in enumerate(contexts):
            for page_number, page in enumerate(context.pages):
                path = SCREENSHOTS / f"{name}-{number}-{page_number}.png"
                page.screenshot(path=str(path), full_page=True)
                print(f"screenshot: {path}")
    for context in contexts:
        context.close()


class Recorder(BaseHTTPRequestHandler):
    """Answers every request with the status and body queued on the server (or the one
    routed to its path), and keeps what it was sent. Requests for the paths given to
    `answer_together` are answered only once `parties` of them are in flight at the same
    time; otherwise, after 10 s, each of them is a 599."""

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        self.server.seen.append(
            (self.command, self.path, dict(self.headers), self.rfile.read(length))
        )
        path = self.path.split("?")[0]
        if path in self.server.together:
            try:
                self.server.barrier.wait(timeout=10)
            except threading.BrokenBarrierError:
                self.server.routes[path] = (599, [], b"not in flight together")
        if path in self.server.routes:
            status, headers, body = self.server.routes[path]
        else:
            status, headers, body = self.server.answers.pop(0)
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = _answer

    def log_message(self, *args):  # quiet
        pass


@pytest.fixture
def recorder():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    server.seen, server.answers, server.routes, server.together = [], [], {}, set()

    def answer_together(paths: set[str], parties: int) -> None:
        server.together = paths
        server.barrier = threading.Barrier(parties)

    server.answer_together = answer_together
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def url_of(server) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture
def tokens(settings, make_token):
    """Session tokens signed with a key of the test's own (settings use its public half)."""
    settings.SESSION_TTL_SECONDS = 900
    return make_token


def unique_email(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:10]}@example.com"
