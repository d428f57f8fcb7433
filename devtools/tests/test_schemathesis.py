"""Every service's OpenAPI schema fuzzed by schemathesis against the running system.

Where: the live stack (the `stack` fixture), through the gateway, with a real Bearer token
from signing up. That is what a client meets: nginx in front, gunicorn workers, the
middleware stack, real PostgreSQL, Redis rate limits and the events that fill orders_svc's
and payments_svc's replicas. In-process tests (Django's test client) would skip the
gateway's own answers and the worker processes; the stack is started once for the whole
devtools suite anyway.

What: schemathesis' own engine, the runner behind its CLI (its pytest integration does not
run on pytest 9.2: it sets a private node attribute pytest no longer has), over every
operation of /api/users, /api/tickets, /api/orders and /api/payments: the examples,
coverage, fuzzing and stateful phases with every built-in check -- no 5xx, every status
documented, every body and header matching its schema, schema-invalid data refused, auth
enforced where the schema says so, 405 with Allow for other methods.

Pinned: seed SEED and deterministic generation, so a run is the same run every time, and
no example database, so no failure of an earlier run is replayed into this one. Fuzzing
is bounded at MAX_EXAMPLES per operation (the coverage phase adds its own boundary cases):
13 operations then stay within about a minute and a half on two cores.
"""

import pytest
import schemathesis
from schemathesis.engine import Status, events, from_schema

from tests import system

SEED = 20240611
# Enough for the fuzzer to find the malformed-input classes (types, bounds, strings a
# database refuses) in each body; more multiplies the run time and found nothing new.
MAX_EXAMPLES = 40
# A slow answer is a failure too, but a CI machine under load is not the thing tested.
MAX_RESPONSE_SECONDS = 10

# schemathesis' own default for positive_data_acceptance (its config._checks).
ACCEPTED = ["2xx", "3xx", "401", "403", "404", "409", "429", "5xx"]
BUSINESS_RULE_400 = {"positive_data_acceptance": {"expected-statuses": [*ACCEPTED, "400"]}}

# Operations per schema (docs/api.md): a route that drops out of a schema fails here.
OPERATIONS = {"users": 6, "tickets": 5, "orders": 4, "payments": 3}
SCHEMAS = list(OPERATIONS)


@pytest.fixture(scope="module")
def token(stack) -> str:
    return system.user(stack, "fuzzer").cookies["session"]


def _config(stack, token: str) -> schemathesis.Config:
    return schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "base-url": stack.url,
            "generation": {
                "deterministic": True,
                "max-examples": MAX_EXAMPLES,
                "database": "none",
                # Every string in the API refuses NUL (shared_lib.parsers: PostgreSQL text
                # cannot hold it) with a documented 400; JSON Schema has no way to say that
                # of every string at once, so schema-valid data would carry one.
                "allow-x00": False,
            },
            "checks": {"max_response_time": MAX_RESPONSE_SECONDS},
            "phases": {
                # The gateway's nginx refuses TRACE itself, for every path and before any
                # routing (cross-site tracing), with a 405 that cannot name the path's
                # methods; a service never sees one. Every other method reaches the service.
                "coverage": {"unexpected-methods": ["GET", "PUT", "POST", "DELETE", "PATCH"]}
            },
            "operations": [
                # Schema-valid requests that a rule no JSON Schema can state refuses with
                # a documented 400 (docs/api.md): signing up with an email already in use
                # or a common password, signing in with credentials of no account ...
                {
                    "include-path-regex": "^/api/users/sign(up|in)$",
                    "include-method": "POST",
                    "checks": BUSINESS_RULE_400,
                },
                # ... and a ?cursor= the server never issued (opaque by design).
                {
                    "include-path-regex": "^/api/(tickets|orders)$",
                    "include-method": "GET",
                    "checks": BUSINESS_RULE_400,
                },
            ],
            "auth": {"openapi": {"bearerAuth": {"bearer": token}}},
        }
    )


def _run(schema: schemathesis.BaseSchema) -> tuple[list[str], set[str]]:
    """Every failed check and engine error of one run as readable lines, and the
    operations that got at least one checked response."""
    failures, tested = set(), set()
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            for checks in event.recorder.checks.values():
                if checks:
                    tested.add(event.label)
                for check in checks:
                    if check.status == Status.FAILURE and check.failure_info is not None:
                        failure = check.failure_info.failure
                        failures.add(
                            f"{event.label} [{event.phase.value}] {check.name}: "
                            f"{failure.title}\n{failure.message}\n"
                            f"{check.failure_info.code_sample}"
                        )
        elif isinstance(event, events.NonFatalError | events.FatalError):
            failures.add(f"engine error: {getattr(event, 'label', '')} {event!r}")
    return sorted(failures), tested


@pytest.mark.parametrize("api", SCHEMAS)
def test_every_operation_keeps_its_schema(stack, token, api):
    schema = schemathesis.openapi.from_url(
        f"{stack.url}/api/{api}/schema/?format=json", config=_config(stack, token), timeout=10
    )
    operations = {op.ok().label for op in schema.get_all_operations()}

    failures, tested = _run(schema)

    assert failures == [], "\n\n".join(failures)
    assert tested >= operations  # nothing passed by not being run
    assert len(operations) == OPERATIONS[api]
