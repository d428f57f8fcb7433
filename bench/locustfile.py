"""The whole journey of a marketplace user, for Locust: sign up, browse, sell, buy, pay.

Run by bench/load.py (`make bench-load`), which starts the system, runs this headless and
reads the samples it leaves in $LOAD_SAMPLES_PATH. By hand, against a running `make up`
(whose sign-up limit of 20/min per IP stops more than 20 users, and whose payment limit of
10/min per buyer counts a payment's retries while payments_svc learns of its order;
export RATE_LIMIT_SIGNUP and RATE_LIMIT_PAYMENTS higher before `make up` to lift them):

    .venv/bin/locust -f bench/locustfile.py --headless -u 5 -r 1 -t 30s \
        --host http://127.0.0.1:8080

Each user signs up once (on start), then repeats the journey: the web client's home page
and the API's first page of tickets (browse), a ticket of its own for sale (sell), an
order on someone else's ticket from that page (buy), the payment with localstripe's test
card (pay).

What counts as an error: every answer other than the one the journey expects (201 for the
writes, 200 for the reads, with the body's fields present), every timeout and connection
error. Two answers are expected behaviour, not errors, and are retried as a person
clicking again would, each retry reported under its own name so it is never mixed into the
endpoint's figures:

- POST /api/orders 404 for a ticket created moments ago: orders_svc learns of a ticket by
  the `ticket.created` event, a few ms after tickets_svc lists it (docs/events.md).
- POST /api/payments 404 for an order created moments ago: payments_svc learns of an order
  by `order.created` likewise.

A 404 that outlasts REPLICA_GRACE_SECONDS is an error (an event lost or stuck).

Saturation (load.py --saturate sets $LOAD_STEPS): SaturationSteps raises the users step by
step. Each step waits until all its users have signed up, lets the journeys mix for
`settle` seconds, then measures `measure` seconds; the run stops after the first step whose
p95 passes `p95_ms`, or that saw any error, or at `max` users. Without $LOAD_STEPS the shape
is inert and Locust's --users/--spawn-rate/--run-time apply.

Two buyers racing for one ticket would get 400 "Ticket is already reserved" - correct
behaviour, but not what this run measures (the fault suite has 100 buyers of one ticket).
The users here share one process, so a buyer claims a ticket in CLAIMED before ordering it
and no two users ever order the same one: a 400 "already reserved" here is then a real
error (a listing or replica that lied), and counts as one.
"""

from __future__ import annotations

import json
import os
import random
import time
import uuid
from collections.abc import Callable
from typing import Any

from _common import percentile
from locust import HttpUser, LoadTestShape, between, events, task
from locust.env import Environment

# A person looks at a page, then clicks: 0.5-1.5 s between the journey's steps. With the
# user count load.py sets, this keeps the two cores busy without an open-ended queue: the
# run measures the system under load, not how long a backlog grows (see bench/README.md).
THINK_SECONDS = (0.5, 1.5)
# How long a person keeps clicking "buy" (or "pay") while the replica catches up: events
# reach a replica in ms on a quiet machine (bench/events.py: p99 ~20 ms at 200/s), but a
# worker behind a backlog on two busy cores queues for seconds (bench/expiry.py: 5-10 s).
# Past this the 404 is an error: an event lost or stuck.
REPLICA_GRACE_SECONDS = 20.0
RETRY_PAUSE_SECONDS = 0.1
# A request slower than this is an error: far above any p99 the system should show.
REQUEST_TIMEOUT_SECONDS = 30.0
PASSWORD = "load-bench-Passw0rd!"  # noqa: S105 (throw-away users on throw-away databases)
CARD_TOKEN = "pm_card_visa"  # noqa: S105 (Stripe's public always-succeeding test card)

STEPS_ENV = "LOAD_STEPS"
# A step whose users have not all signed up by then has found the limit already (a
# sign-up costs ~0.27 s of CPU: a step's 10-20 are 3-6 s of CPU on a quiet machine).
SIGNUP_TIMEOUT_SECONDS = 60.0

# Ticket ids some user of this process has ordered: never ordered twice (see above).
CLAIMED: set[str] = set()
# Samples for load.py: one row per request, and per completed purchase.
SAMPLES: list[tuple[float, str, float, bool]] = []  # (end time, name, ms, failed)
PURCHASES: list[tuple[float, str]] = []  # (time of the payment's 201, order id)
FAILURES: list[tuple[float, str, str]] = []  # (end time, name, what went wrong)
NOTHING_TO_BUY: list[float] = []  # when a journey found nothing to buy
COUNTERS = {"nothing_to_buy": 0, "signed_up": 0}
STEPS: list[dict[str, Any]] = []  # saturation mode: one row per step, as measured


@events.request.add_listener
def _record(
    name: str,
    response_time: float,
    exception: BaseException | None,
    start_time: float | None = None,
    **_: Any,
) -> None:
    end = (start_time or time.time()) + response_time / 1000
    SAMPLES.append((end, name, response_time, exception is not None))
    if exception is not None:
        FAILURES.append((end, name, str(exception)[:300]))


@events.quitting.add_listener
def _write_samples(environment: Environment, **_: Any) -> None:
    path = os.environ.get("LOAD_SAMPLES_PATH")
    if not path:
        return
    with open(path, "w") as out:
        json.dump(
            {
                "samples": SAMPLES,
                "purchases": PURCHASES,
                "failures": FAILURES,
                "nothing_to_buy": NOTHING_TO_BUY,
                "counters": COUNTERS,
                "steps": STEPS,
            },
            out,
        )


def measure_window(start: float, settled: float, end: float) -> dict[str, Any]:
    """A step's figures: errors over the whole step (its ramp too), latency and rates over
    [settled, end), when every user of the step was on its journeys."""
    window = end - settled
    latencies = sorted(ms for at, _name, ms, _failed in SAMPLES if settled <= at < end)
    errors = [f for f in FAILURES if start <= f[0] < end]
    return {
        "requests": len(latencies),
        "rps": len(latencies) / window,
        "p50_ms": percentile(latencies, 50) if latencies else None,
        "p95_ms": percentile(latencies, 95) if latencies else None,
        "p99_ms": percentile(latencies, 99) if latencies else None,
        "errors": len(errors),
        "error_examples": sorted({f"{name}: {what}" for _at, name, what in errors})[:5],
        "purchases": sum(1 for at, _order in PURCHASES if settled <= at < end),
        "purchases_per_second": sum(1 for at, _o in PURCHASES if settled <= at < end) / window,
        "nothing_to_buy": sum(1 for at in NOTHING_TO_BUY if settled <= at < end),
    }


class SaturationSteps(LoadTestShape):
    """More users step by step until p95 passes the limit or an error appears."""

    # Only in saturation mode: a shape in the locustfile otherwise replaces --users.
    abstract = not os.environ.get(STEPS_ENV)

    def __init__(self) -> None:
        super().__init__()
        plan = json.loads(os.environ[STEPS_ENV])
        self.users: int = plan["start"]
        self.increment: int = plan["step"]
        self.max_users: int = plan["max"]
        self.spawn_rate: float = plan["spawn_rate"]
        self.settle: float = plan["settle"]
        self.measure: float = plan["measure"]
        self.p95_limit: float = plan["p95_ms"]
        self.started = time.time()
        self.settled: float | None = None

    def tick(self) -> tuple[int, float] | None:
        now = time.time()
        if self.settled is None:
            if COUNTERS["signed_up"] >= self.users:
                self.settled = now + self.settle
            elif now - self.started > SIGNUP_TIMEOUT_SECONDS:
                STEPS.append(
                    {
                        "users": self.users,
                        "stopped": f"{COUNTERS['signed_up']} of {self.users} users signed up"
                        f" within {SIGNUP_TIMEOUT_SECONDS:.0f} s",
                        "past_limit": True,
                        **measure_window(self.started, self.started, now),
                    }
                )
                return None
            return self.users, self.spawn_rate
        end = self.settled + self.measure
        if now < end:
            return self.users, self.spawn_rate
        row = {"users": self.users, "start": self.started, "settled": self.settled, "end": end}
        row.update(measure_window(self.started, self.settled, end))
        p95 = row["p95_ms"]
        row["past_limit"] = bool(row["errors"]) or p95 is None or p95 > self.p95_limit
        if row["errors"]:
            row["stopped"] = f"{row['errors']} errors"
        elif row["past_limit"]:
            row["stopped"] = f"p95 {p95:.0f} ms > {self.p95_limit:.0f} ms" if p95 else "no answer"
        elif self.users >= self.max_users:
            row["stopped"] = f"reached the most users asked for ({self.max_users})"
        STEPS.append(row)
        if "stopped" in row:
            return None
        self.users = min(self.max_users, self.users + self.increment)
        self.started, self.settled = now, None
        return self.users, self.spawn_rate


class Shopper(HttpUser):
    wait_time = between(*THINK_SECONDS)

    def on_start(self) -> None:
        self.email = f"load-{uuid.uuid4().hex[:16]}@example.com"
        with self.client.post(
            "/api/users/signup",
            json={"email": self.email, "password": PASSWORD},
            name="POST /api/users/signup",
            timeout=REQUEST_TIMEOUT_SECONDS,
            catch_response=True,
        ) as response:
            # The session cookie it sets signs the user in for the rest of the run.
            self.user_id = _expect(response, 201, "id")
        COUNTERS["signed_up"] += 1  # failed or not: a failure counts as an error

    @task
    def journey(self) -> None:
        candidates = self.browse()
        self.wait()
        self.sell()
        self.wait()
        ticket_id = self.pick(candidates)
        if ticket_id is None:
            COUNTERS["nothing_to_buy"] += 1
            NOTHING_TO_BUY.append(time.time())
            return
        order_id = self.buy(ticket_id)
        self.wait()
        self.pay(order_id)

    def browse(self) -> list[dict[str, Any]]:
        self._get("/", "GET / (web client home)", lambda r: b"<html" in r.content[:500].lower())
        page = self._get("/api/tickets", "GET /api/tickets", lambda r: isinstance(_json(r), list))
        return page.json() if page is not None else []

    def _get(self, path: str, name: str, looks_right: Callable[[Any], bool]) -> Any:
        """The response when GET `path` answers 200 and looks right; else a failure, None."""
        with self.client.get(
            path, name=name, timeout=REQUEST_TIMEOUT_SECONDS, catch_response=True
        ) as response:
            if response.status_code == 200 and looks_right(response):
                return response
            response.failure(f"{response.status_code}: {response.text[:200]}")
            return None

    def sell(self) -> None:
        with self.client.post(
            "/api/tickets",
            json={
                "title": f"Load test {uuid.uuid4().hex[:8]}",
                "price": random.randint(5, 200),  # noqa: S311 (test data, not a secret)
            },
            name="POST /api/tickets",
            timeout=REQUEST_TIMEOUT_SECONDS,
            catch_response=True,
        ) as response:
            _expect(response, 201, "id")

    def pick(self, listing: list[dict[str, Any]]) -> str | None:
        """A free ticket of someone else's from the page, not claimed by another user."""
        free = [
            t["id"] for t in listing if t.get("userId") != self.user_id and t.get("orderId") is None
        ]
        for ticket_id in random.sample(free, len(free)):
            if ticket_id not in CLAIMED:
                CLAIMED.add(ticket_id)
                return ticket_id
        return None

    def buy(self, ticket_id: str) -> str | None:
        return self._post_retrying_404(
            "/api/orders", {"ticketId": ticket_id}, "POST /api/orders", "ticket"
        )

    def pay(self, order_id: str | None) -> None:
        if order_id is None:
            return
        body = {"orderId": order_id, "token": CARD_TOKEN}
        payment = self._post_retrying_404("/api/payments", body, "POST /api/payments", "order")
        if payment is not None:
            PURCHASES.append((time.time(), order_id))

    def _post_retrying_404(self, path: str, body: dict[str, str], name: str, what: str) -> Any:
        """POST until 201, retrying a 404 while the service's replica may still be behind."""
        deadline = time.monotonic() + REPLICA_GRACE_SECONDS
        while True:
            with self.client.post(
                path, json=body, name=name, timeout=REQUEST_TIMEOUT_SECONDS, catch_response=True
            ) as response:
                if response.status_code == 404 and time.monotonic() < deadline:
                    # Expected while the event is on its way: reported apart, not an error.
                    response.request_meta["name"] = f"{name} 404, {what} not yet replicated"
                    response.success()
                else:
                    return _expect(response, 201, "id")
            time.sleep(RETRY_PAUSE_SECONDS)  # gevent-patched: yields to the other users


def _json(response: Any) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _expect(response: Any, status: int, field: str) -> Any:
    """The body's `field` when the answer is `status` with it; otherwise a failure."""
    body = _json(response)
    if response.status_code == status and isinstance(body, dict) and body.get(field):
        return body[field]
    response.failure(f"{response.status_code}: {response.text[:200]}")
    return None
