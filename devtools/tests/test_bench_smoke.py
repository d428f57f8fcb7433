"""The benchmarks in bench/ at smoke scale (`--smoke`): every path of a full run at tiny
sizes, so a bench that crashes, loses work or measures nothing fails `make test`. Figures
are checked to be there and sane (stable keys, positive and finite), never against a
target: a smoke run on a shared 2-core machine says nothing about speed."""

from __future__ import annotations

import importlib.util
import json
import math
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
BENCH_DIR = REPO_ROOT / "bench"
# A smoke run takes 25-90 s here (a third to half of it starting a stack), several times
# that while other test runs load the machine; one still running after this is hung.
RUN_TIMEOUT_SECONDS = 600
# A bench cleans up (databases, vhost, its processes) on SIGTERM before it exits.
CLEANUP_SECONDS = 60


@dataclass(frozen=True)
class Smoke:
    script: str
    rows: tuple[str, ...]  # how the headline rows of its printed table begin
    check: Callable[[dict[str, Any]], None]  # the figures its JSON must hold
    args: tuple[str, ...] = ()
    # Started with the module's first smoke test and run beside the others: for a bench
    # whose run is mostly waiting on a clock, so that the module stays within ~3 minutes.
    background: bool = False


def _positive(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )


def assert_positive(figures: dict[str, Any], *keys: str) -> None:
    assert {key: figures[key] for key in keys if not _positive(figures[key])} == {}


def assert_percentiles(value: dict[str, Any], samples: int | None = None) -> None:
    assert_positive(value, "p50_ms", "p99_ms", "max_ms", "samples")
    assert value["p50_ms"] <= value["p99_ms"] <= value["max_ms"]
    if samples is not None:
        assert value["samples"] == samples


def check_events(figures: dict[str, Any]) -> None:
    assert figures["smoke"] is True
    assert_positive(
        figures,
        "broker_publish_per_s",
        "broker_consume_per_s",
        "postgres_tx_per_s",
        "outbox_publish_per_s",
        "handled_per_s_per_worker",
        "latency_rate_achieved",
        "throughput_ratio",
    )
    assert_percentiles(figures["broker_round_trip"])
    assert_percentiles(figures["latency"])
    assert len(figures["latency_steps"]) == 3
    for step in figures["latency_steps"].values():
        # A step between two processes' clocks of one host can be below zero: the relay
        # marks a batch sent once all its confirms are in, and a consumer may already be
        # handling the first event by then.
        assert all(math.isfinite(step[key]) for key in ("p50_ms", "p99_ms", "max_ms"))
        assert step["p50_ms"] <= step["p99_ms"] <= step["max_ms"]
    assert set(figures["peers"]) == {"postgres_loop", "kombu", "nameko", "faststream"}
    for peer in figures["peers"].values():
        assert_positive(peer, "events_per_s", "cpu_ms_per_event", "events")
    assert_positive(figures["ours_to_peer"], *figures["peers"])
    assert set(figures["targets"]) >= {"throughput_ratio_min", "latency_p99_ms_max"}


HTTP_ENDPOINTS = {
    "list_1k",
    "list_100k",
    "first_100k",
    "search_100k",
    "post_tickets",
    "post_orders",
}


def check_http_api(figures: dict[str, Any]) -> None:
    assert figures["smoke"] is True
    assert figures["broken"] == []
    assert figures["scale"] == {
        "small_table": 100,
        "large_table": 1000,
        "seconds": 1,
        "warmup_seconds": 1,
    }
    assert set(figures["pairs"]) == HTTP_ENDPOINTS
    for pair in figures["pairs"].values():
        for run in (pair["endpoint"], pair["bare"]):
            assert (run["non_2xx"], run["socket_errors"]) == (0, 0)
            assert_positive(run, "requests", "rps", "p50_ms", "p99_ms")
            assert run["p50_ms"] <= run["p99_ms"] <= run["max_ms"]
            assert_positive(run["cpu"], "app_ms", "machine_cores")
    assert_positive(figures, "ceiling_rps", "list_p50_100k_over_1k", "search_p50_over_first_page")
    assert_positive(figures["ratios"], *HTTP_ENDPOINTS)
    assert_positive(figures["cpu_ratios"], *HTTP_ENDPOINTS)
    for name in ("post_tickets", "post_orders"):
        # Every 2xx answer made its row (a few more: requests in flight at wrk's stop).
        assert figures["rows_created"][name] >= figures["pairs"][name]["endpoint"]["requests"]
    assert set(figures["outbox_unsent"]) == {"tickets_100k", "orders"}
    assert set(figures["plans"]) == {"first_page", "deep_page"}
    for plan in figures["plans"].values():
        assert plan[0].startswith("Limit")
    assert figures["targets"] == {
        "list_ratio_min": 0.5,
        "write_ratio_min": 0.3,
        "list_p50_growth_max": 1.3,
        "search_p50_over_first_page_max": 1.3,
    }


EXPIRY_ORDERS = 50


def check_expiry(figures: dict[str, Any]) -> None:
    assert figures["smoke"] is True
    assert figures["broken"] == []
    assert (figures["orders"], figures["order_helpers"], figures["release_lead_seconds"]) == (
        EXPIRY_ORDERS,
        1,
        8.0,
    )
    assert (figures["cancelled"], figures["lost"]) == (EXPIRY_ORDERS, 0)
    assert figures["statuses"] == {"cancelled": EXPIRY_ORDERS}
    assert_percentiles(figures["lateness"], EXPIRY_ORDERS)
    assert figures["lateness"]["min_ms"] >= 0  # never cancelled before its expiresAt
    ceiling = figures["ceiling"]
    assert (ceiling["sent"], ceiling["received"]) == (EXPIRY_ORDERS, EXPIRY_ORDERS)
    assert ceiling["lateness"]["samples"] == EXPIRY_ORDERS
    assert_positive(ceiling, "due_spread_ms")
    assert len(figures["steps"]) == 4
    for step in figures["steps"].values():
        # Finite, not positive: a task reaches expiration.tasks up to 1 s early by design.
        assert step["samples"] == EXPIRY_ORDERS
        assert math.isfinite(step["p50_ms"])
        assert math.isfinite(step["p99_ms"])
    assert len(figures["cycle"]) == 2
    assert sum(figures["batch_sizes"]) == EXPIRY_ORDERS  # each expiry in one batch
    assert figures["expirations_published"] >= EXPIRY_ORDERS
    assert figures["tasks_seen"] >= EXPIRY_ORDERS
    assert_positive(
        figures,
        "fired_per_s",
        "handled_per_s",
        "burst_seconds",
        "machine_busy_cores",
        "ratio_p50",
        "ratio_p99",
    )
    assert_positive(figures["cpu"]["orders worker"], "seconds", "cores")
    assert figures["targets"] == {"lateness_p99_ms_max": 1000.0, "lost_max": 0}


def check_load(figures: dict[str, Any]) -> None:
    assert figures["smoke"] is True
    assert figures["errors"] == 0
    total = figures["total"]
    assert total["errors"] == 0
    assert_positive(total, "requests", "rps", "p50_ms", "p95_ms", "p99_ms", "max_ms")
    assert figures["endpoints"]
    for row in figures["endpoints"]:
        assert row["errors"] == 0
        assert_positive(row, "requests", "rps")
    assert_positive(figures, "purchases", "purchases_per_second", "memory_total_mib")
    assert figures["paid_orders_status"].get("complete") == figures["purchases"]
    assert figures["memory"]
    for row in figures["memory"]:
        assert_positive(row, "peak_rss_mib")
    assert figures["cpu_cores"]


SMOKES = [
    pytest.param(
        Smoke(
            "events.py",
            rows=(
                "ceiling  broker publish (confirmed)",
                "ceiling  broker consume+ack",
                "ceiling  broker round trip",
                "ceiling  postgres 1-row transaction",
                "pipeline outbox publish (1/tx)",
                "pipeline handled events/s/worker",
                "latency  publish->handled @200/s",
                "peers    ",
            ),
            check=check_events,
        ),
        id="events",
    ),
    pytest.param(
        Smoke(
            "http_api.py",
            rows=(
                "scale    smoke (--smoke): 100 and 1k tickets",
                "GET  /api/tickets, 100 tickets",
                "GET  /api/tickets, 1k tickets",
                "POST /api/tickets",
                "POST /api/orders",
                "ceiling: bare Django view",
                "list p50 at 1k / 100 tickets:",
                "writes   /api/tickets: ",
                "CPU, ms per request",
                "plan     EXPLAIN ANALYZE of the list's query at 1k tickets",
            ),
            check=check_http_api,
        ),
        id="http_api",
    ),
    pytest.param(
        Smoke(
            "expiry.py",
            rows=(
                "scale    smoke (--smoke): 50 orders",
                "lateness expiresAt -> order cancelled in orders_svc",
                "lost     0 of 50 not cancelled",
                "ceiling  broker alone",
                "ratio    pipeline / ceiling",
                "steps    per order",
                "batches  the orders worker's batches of expiries",
                "rates    expiration_worker published 50 expiration.complete",
                "cpu      from 0.5 s before the expiry",
            ),
            check=check_expiry,
            # Half of its run waits: on the delayed deliveries and the expiry's lead.
            background=True,
        ),
        id="expiry",
    ),
    pytest.param(
        Smoke(
            "load.py",
            rows=(
                "endpoint ",
                "all requests",
                "purchases completed",
                "memory   peak RSS",
                "cpu      cores used",
                "errors   0",
            ),
            check=check_load,
            # Its chart and logs into the test's directory, not var/bench/load.
            args=("--out", "{tmp}/out"),
        ),
        id="load",
    ),
]


class BenchRun:
    """`bench/<script> --smoke --json <directory>/figures.json`, from the repo root; its
    stdout and stderr (progress, a traceback) go to files beside the JSON."""

    def __init__(self, smoke: Smoke, directory: Path) -> None:
        self.smoke = smoke
        self.json_path = directory / "figures.json"
        self.stdout_path = directory / "stdout.txt"
        self.stderr_path = directory / "stderr.txt"
        args = [arg.format(tmp=directory) for arg in smoke.args]
        script = str(BENCH_DIR / smoke.script)
        with self.stdout_path.open("wb") as stdout, self.stderr_path.open("wb") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, script, "--smoke", "--json", str(self.json_path), *args],
                cwd=REPO_ROOT,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
            )
        self.deadline = time.monotonic() + RUN_TIMEOUT_SECONDS

    def finish(self) -> str:
        """Waits for the run, which must exit 0; what it printed on stdout."""
        try:
            code = self.process.wait(timeout=max(0.0, self.deadline - time.monotonic()))
        except BaseException:  # hung, or the test run interrupted
            self.stop()
            raise
        printed = self.stdout_path.read_text(errors="replace")
        if code != 0:
            pytest.fail(
                f"{self.smoke.script} --smoke exited {code}\n--- stdout (tail)\n{printed[-4000:]}"
                f"\n--- stderr (tail)\n{self.stderr_path.read_text(errors='replace')[-6000:]}"
            )
        return printed

    def stop(self) -> None:
        """SIGTERM, on which a bench drops its databases and vhost and stops its processes."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=CLEANUP_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


SMOKE_TEST = "test_bench_runs_at_smoke_scale_and_prints_its_figures"


@pytest.fixture(scope="module")
def background_runs(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, BenchRun]]:
    """The selected benches marked `background`, started together with the first smoke test
    of the module, so that their waiting overlaps the others' runs."""
    selected = [
        item.callspec.params["smoke"]
        for item in request.session.items
        if getattr(item, "originalname", "") == SMOKE_TEST and hasattr(item, "callspec")
    ]
    runs = {
        smoke.script: BenchRun(smoke, tmp_path_factory.mktemp(f"bench-{smoke.script}"))
        for smoke in selected
        if smoke.background
    }
    try:
        yield runs
    finally:
        for run in runs.values():
            run.stop()


@pytest.mark.parametrize("smoke", SMOKES)
def test_bench_runs_at_smoke_scale_and_prints_its_figures(
    smoke: Smoke, background_runs: dict[str, BenchRun], tmp_path: Path
) -> None:
    run = background_runs.get(smoke.script) or BenchRun(smoke, tmp_path)
    try:
        printed = run.finish()
    finally:
        run.stop()

    lines = printed.splitlines()
    missing = [row for row in smoke.rows if not any(line.startswith(row) for line in lines)]
    assert missing == [], printed
    assert not [line for line in lines if line.startswith("BROKEN")]
    smoke.check(json.loads(run.json_path.read_text()))


# ---------------------------------------------------------------------------------------
# What fails a run: broken, never slow (the scripts' own verdict, without a run)
# ---------------------------------------------------------------------------------------


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], ModuleType]:
    """A bench script imported as a module (bench/ on sys.path, as when it runs)."""
    monkeypatch.syspath_prepend(str(BENCH_DIR))

    def load(name: str) -> ModuleType:
        spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH_DIR / f"{name}.py")
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look it up
        spec.loader.exec_module(module)
        return module

    return load


def _http_results(http: ModuleType, *, bare: dict[str, Any] | None = None, **endpoint: Any) -> Any:
    """A smoke run's results: the bare view at 3,000 req/s, each endpoint far below its
    target at 30 req/s (ratio 0.01); `endpoint` overrides post_orders' measurement, `bare`
    the bare view's."""

    def measured(**fields: Any) -> Any:
        values = {
            "requests": 30,
            "seconds": 1.0,
            "rps": 30.0,
            "p50_ms": 500.0,
            "p90_ms": 900.0,
            "p99_ms": 990.0,
            "max_ms": 1000.0,
            "non_2xx": 0,
            "socket_errors": 0,
            **fields,
        }
        return http.Measurement(**values, cpu=http.CpuUse(machine_cores=2.0, app_ms=60.0))

    ceiling = measured(
        **{"requests": 3000, "rps": 3000.0, "p50_ms": 5.0, "p99_ms": 9.0, **(bare or {})}
    )
    results = http.Results(started_at="now", scale=http.SMOKE, smoke=True)
    for name in http.ENDPOINTS:
        fields = endpoint if name == "post_orders" else {}
        results.pairs[name] = http.Pair(endpoint=measured(**fields), bare=ceiling)
    results.rows_created = {"post_tickets": 30, "post_orders": 30}
    return results


def test_http_api_a_slow_run_is_not_broken_and_an_erroring_one_is(bench) -> None:
    http = bench("http_api")

    slow = _http_results(http)
    all_rejected = _http_results(http, non_2xx=30)
    nothing = _http_results(http, requests=0, rps=0.0, socket_errors=16)
    some_errors = _http_results(http, non_2xx=1)

    assert slow.ratio("post_orders") == pytest.approx(0.01)
    assert http.broken(slow) == []
    assert http.broken(all_rejected) == [
        "POST /api/orders: 0 answered 2xx, 30 answered >= 400, 0 socket errors (must be 0)"
    ]
    assert http.broken(nothing) == [
        "POST /api/orders: 0 answered 2xx, 0 answered >= 400, 16 socket errors (must be 0)"
    ]
    assert http.broken(some_errors) == [
        "POST /api/orders: 29 answered 2xx, 1 answered >= 400, 0 socket errors (must be 0)"
    ]


def test_http_api_a_2xx_write_without_its_row_is_broken(bench) -> None:
    http = bench("http_api")
    results = _http_results(http)
    results.rows_created["post_orders"] = 29

    assert http.broken(results) == ["POST /api/orders: 30 answered 2xx, only 29 rows created"]


def test_http_api_prints_why_a_run_is_broken_even_without_a_ceiling(bench, capsys) -> None:
    http = bench("http_api")
    # The bare view answered nothing: every ratio would divide by a ceiling of 0 req/s.
    results = _http_results(http, bare={"requests": 0, "rps": 0.0, "socket_errors": 16})
    results.machine = {"cores": 2}
    load = {"threads": 2, "connections": 16, "seconds": 1, "warmup_seconds": 1, "workers": 3}
    results.load = load
    results.broken = http.broken(results)

    http.print_table(results)

    lines = capsys.readouterr().out.splitlines()
    assert [line for line in lines if line.startswith("BROKEN")] == [
        "BROKEN   bare view (1): 0 answered 2xx, 0 answered >= 400, 16 socket errors (must be 0)"
    ]
    row = next(line for line in lines if line.startswith("POST /api/orders"))
    assert row.split()[-5:] == ["0.00", "1.00", ">=", "0.30:", "MISSED"]  # ratio 0, not a crash


def test_expiry_a_late_run_is_not_broken_and_a_lost_expiry_is(bench) -> None:
    expiry = bench("expiry")

    def results(*, lost: int = 0, received: int = 50) -> Any:
        late = expiry.Percentiles.of([12.0] * 50)  # every order 12 s late: target missed
        ceiling = expiry.Ceiling(lateness=late, received=received, sent=50, due_spread_ms=980.0)
        return expiry.Results(
            started_at="now", orders=50, lateness=late, ceiling=ceiling, lost=lost
        )

    assert expiry.broken(results()) == []
    assert expiry.broken(results(lost=3)) == [
        "3 of 50 orders not cancelled 30 s after the last expiresAt"
    ]
    assert expiry.broken(results(received=48)) == [
        "the ceiling: 2 of 50 delayed messages never arrived"
    ]
