"""localstripe (the fake Stripe server from PyPI) with a store of its own.

    python -m ticketing_devtools.localstripe --store var/run/x/stripe.pickle --port 8420
    with running(tmp_path / "stripe.pickle") as api_base: ...   # a test's own, on a free port

Upstream keeps its state in one hard-coded file, /tmp/localstripe.pickle, rewritten on
every change and read back at start: every instance on a machine (a `make up`, a test
stack, the payments suite, a benchmark) would share it — one instance's charges showing
up in another's ledger, and two writing at once truncating it so the next start fails
("pickle data was truncated"). Here each instance gets its own file, written atomically.

Upstream also lacks some of Stripe's behaviour that payments_svc relies on (Stripe's test
cards by name, cards declined on charge, `charge_already_refunded`, `charge.refunded`,
searching PaymentIntents by metadata): _learn_stripe_behaviours adds it. With
--webhook-url and --webhook-secret, upstream posts every event there, signed as Stripe
signs (`Stripe-Signature`, which the SDK's `stripe.Webhook.construct_event` accepts), a
second after it happens and once: it never retries, and an event made in the last second
before a stop is never posted.

The Stripe.js stand-in served at /js.stripe.com/v3/ is our copy of upstream's
(vendor/localstripe-v3.js beside this module), which can also `createPaymentMethod`: a page's
Stripe Elements flow works against the fake, card typed in, 3-D Secure modal and all.

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
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from shared_lib.testing.processes import Process, free_port

FLUSH_AFTER_SECONDS = 0.5

# Stripe's test cards by the name Stripe gives each (https://docs.stripe.com/testing#cards,
# https://docs.stripe.com/testing#regulatory-cards): `tok_<name>` is a token and
# `pm_card_<name>` a PaymentMethod of that card, which any test account may use any number
# of times. 16-digit cards only (localstripe's cards are 16 digits).
TEST_CARDS = {
    "visa": "4242424242424242",
    "visa_debit": "4000056655665556",
    "mastercard": "5555555555554444",
    "mastercard_debit": "5200828282828210",
    "chargeDeclined": "4000000000000002",
    "chargeDeclinedInsufficientFunds": "4000000000009995",
    "chargeDeclinedLostCard": "4000000000009987",
    "chargeDeclinedStolenCard": "4000000000009979",
    "chargeDeclinedExpiredCard": "4000000000000069",
    "chargeDeclinedIncorrectCvc": "4000000000000127",
    "chargeDeclinedProcessingError": "4000000000000119",
    "chargeCustomerFail": "4000000000000341",  # attaches, then declines when charged
    # Every payment needs 3-D Secure (upstream knows these numbers: requires_action).
    "threeDSecure2Required": "4000000000003220",
    "authenticationRequired": "4000002760003184",
}
# Cards Stripe declines when charged (as well as when attached), the chargeDeclined ones:
# upstream declines them only on attach, so a PaymentIntent with one would succeed there
# and not at Stripe.
DECLINED_ON_CHARGE = frozenset(
    number for name, number in TEST_CARDS.items() if name.startswith("chargeDeclined")
)
# The expiry and CVC of a test card named, as Stripe's test PaymentMethods have some.
TEST_CARD_EXPIRY_AND_CVC = {"exp_month": "12", "exp_year": "2030", "cvc": "123"}

WEBHOOK_OPTIONS_PAIRED = "--webhook-url and --webhook-secret go together: give both or neither"
# Our copy of upstream's Stripe.js stand-in, which can also create PaymentMethods (its
# header says what else changed), and where pages load it from.
STRIPE_JS = Path(__file__).with_name("vendor") / "localstripe-v3.js"
STRIPE_JS_PATH = "/js.stripe.com/v3/"


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


def _learn_stripe_behaviours() -> None:
    """Teach upstream what Stripe does and it does not, where payments_svc relies on it:

    - PaymentMethods made from card tokens (`card[token]=tok_...`), Stripe's test tokens
      included; a token of the fake's own is single-use, as at Stripe.
    - Stripe's test PaymentMethods (`pm_card_visa`, `pm_card_threeDSecure2Required`...)
      wherever a PaymentMethod id is taken (upstream knows three); a PaymentIntent given
      one names the PaymentMethod made of it (`pm_...`), as at Stripe.
    - Cards that decline on charge really decline (DECLINED_ON_CHARGE).
    - A failed 3-D Secure authentication sends `payment_intent.payment_failed`.
    - A refund of a charge already refunded in full fails with `charge_already_refunded`
      (upstream refunds it again), and one of an intent never charged fails cleanly; a
      refund made sends `charge.refunded` with the Charge.
    - `GET /v1/payment_intents/search` for `metadata['key']:'value'` clauses (AND-ed).
    """
    from localstripe import resources
    from localstripe.errors import UserError
    from localstripe.webhooks import schedule_webhook

    payment_method_init = resources.PaymentMethod.__init__

    def payment_method_from_token(self: Any, type: Any = None, card: Any = None, **kw: Any):
        if type == "card" and isinstance(card, dict) and set(card) == {"token"}:
            card = _card_of_token(card["token"])
        payment_method_init(self, type=type, card=card, **kw)

    def _card_of_token(token: Any) -> dict[str, str]:
        number = _test_card_number(token, "tok_")
        if number is None:
            stored = resources.store.get(f"token:{token}")
            if stored is None:
                raise UserError(
                    400,
                    f"No such token: '{token}'",
                    {"code": "resource_missing", "param": "card[token]"},
                )
            if getattr(stored, "_used", False):
                raise UserError(
                    400,
                    f"You cannot use a Stripe token more than once: {token}.",
                    {"code": "token_already_used", "param": "card[token]"},
                )
            stored._used = True
            number = stored.card._card_number
        return {"number": number, **TEST_CARD_EXPIRY_AND_CVC}

    resources.PaymentMethod.__init__ = payment_method_from_token

    named_by_upstream = resources.PaymentMethod._try_get_canonical_test_article

    def test_payment_method(cls: Any, id: Any) -> Any:
        # Like Stripe (and upstream), each use of the name makes a new PaymentMethod.
        number = _test_card_number(id, "pm_card_")
        if number is None:
            return named_by_upstream(id)
        return cls(type="card", card={"number": number, **TEST_CARD_EXPIRY_AND_CVC})

    resources.PaymentMethod._try_get_canonical_test_article = classmethod(test_payment_method)

    payment_intent_init = resources.PaymentIntent.__init__

    def payment_intent_of_test_card(self: Any, payment_method: Any = None, **kw: Any):
        # Upstream keeps the name and makes a new PaymentMethod at each use of the intent
        # (its charge naming another one); Stripe makes one, and the intent names it.
        if isinstance(payment_method, str):
            made = resources.PaymentMethod._try_get_canonical_test_article(payment_method)
            if made is not None:
                payment_method = made.id
        payment_intent_init(self, payment_method=payment_method, **kw)

    resources.PaymentIntent.__init__ = payment_intent_of_test_card

    charging_is_declined = resources.PaymentMethod._charging_is_declined

    def declined_on_charge(self: Any) -> bool:
        if self.type == "card" and self._card_number in DECLINED_ON_CHARGE:
            return True
        return charging_is_declined(self)

    resources.PaymentMethod._charging_is_declined = declined_on_charge

    authenticate = resources.PaymentIntent._api_authenticate

    def authenticate_and_report_failure(**kw: Any) -> Any:
        intent = authenticate(**kw)
        if intent._authentication_failed:
            schedule_webhook(resources.Event("payment_intent.payment_failed", intent))
        return intent

    # Upstream's routes are made from extra_apis when its server is imported, after this.
    _reroute(resources.extra_apis, authenticate, authenticate_and_report_failure)

    refund_init = resources.Refund.__init__

    def refund_once(self: Any, charge: Any = None, payment_intent: Any = None, **kw: Any):
        if isinstance(payment_intent, str) and payment_intent.startswith("pi_"):
            intent = resources.PaymentIntent._api_retrieve(payment_intent)
            if intent.latest_charge is None:
                raise UserError(
                    400,
                    f"This PaymentIntent ({payment_intent}) does not have a successful "
                    "charge to refund.",
                    {"code": "charge_not_refundable"},
                )
            target = intent.latest_charge
        elif isinstance(charge, str) and charge.startswith("ch_"):
            target = resources.Charge._api_retrieve(charge)
        else:
            target = None
        if target is not None and target.amount_refunded and target.refunded:
            raise UserError(
                400,
                f"Charge {target.id} has already been refunded.",
                {"code": "charge_already_refunded", "charge": target.id},
            )
        refund_init(self, charge=charge, payment_intent=payment_intent, **kw)

    resources.Refund.__init__ = refund_once

    create_refund = resources.Refund._api_create

    def refund_and_report(cls: Any, **data: Any) -> Any:
        refund = create_refund(**data)
        if refund.status == "succeeded":
            charge = resources.Charge._api_retrieve(refund.charge)
            schedule_webhook(resources.Event("charge.refunded", charge))
        return refund

    # Refunds made by the API only: upstream also makes one for the part of a charge not
    # captured, which at Stripe is no refund.
    resources.Refund._api_create = classmethod(refund_and_report)

    class SearchResult(resources.List):
        object = "search_result"

        @property
        def next_page(self) -> None:
            return None

    def search_payment_intents(query: Any = None, limit: Any = None, **kw: Any) -> Any:
        clauses = _metadata_clauses(query)
        found = SearchResult("/v1/payment_intents/search", limit=limit or 10)
        found._list = [
            intent
            for key, intent in resources.store.items()
            if key.startswith("payment_intent:")
            and all((intent.metadata or {}).get(k) == v for k, v in clauses)
        ]
        return found

    # Before upstream's routes are made, so /search is not taken for an intent id.
    resources.extra_apis.append(("GET", "/v1/payment_intents/search", search_payment_intents))


def _test_card_number(id: Any, prefix: str) -> str | None:
    """The number of the test card Stripe names `id` (`tok_visa`, `pm_card_visa`), if any."""
    if isinstance(id, str) and id.startswith(prefix):
        return TEST_CARDS.get(id.removeprefix(prefix))
    return None


def _reroute(routes: list[tuple[str, str, Any]], old: Any, new: Any) -> None:
    """Have upstream's route to `old` (in its `extra_apis`) call `new` instead."""
    [at] = [n for n, (_, _, func) in enumerate(routes) if func == old]
    method, url, _ = routes[at]
    routes[at] = (method, url, new)


def _metadata_clauses(query: Any) -> list[tuple[str, str]]:
    """`metadata['a']:'x' AND metadata['b']:'y'` as [("a", "x"), ("b", "y")]."""
    import re

    from localstripe.errors import UserError

    clause = re.compile(r"""^metadata\['([^']+)'\]:'([^']*)'$""")
    parts = str(query or "").split(" AND ")
    matches = [clause.match(part.strip()) for part in parts]
    if not query or not all(matches):
        raise UserError(400, f"Unsupported search query: {query!r}")
    return [(m.group(1), m.group(2)) for m in matches if m]


def _serve_our_stripe_js_and_payment_methods(server: Any) -> None:
    """Upstream's app, before it starts: STRIPE_JS served at STRIPE_JS_PATH in place of
    upstream's stand-in, and PaymentMethods created with a publishable key as Stripe.js
    creates them (upstream takes `key=pk_...` for tokens and sources only)."""
    from aiohttp import web

    @web.middleware
    async def publishable_key_creates_payment_methods(request: Any, handler: Any) -> Any:
        if request.method == "POST" and request.path == "/v1/payment_methods":
            data = await server.get_post_data(request, remove_auth=False)
            key = data.get("key") if isinstance(data, dict) else None
            if isinstance(key, str) and key.startswith("pk_"):
                return await handler(request)
        return await server.auth_middleware(request, handler)

    @web.middleware
    async def our_stripe_js(request: Any, handler: Any) -> Any:
        if request.method == "GET" and request.path == STRIPE_JS_PATH:
            return web.Response(text=STRIPE_JS.read_text(), content_type="application/javascript")
        return await handler(request)

    middlewares = server.app.middlewares
    middlewares[middlewares.index(server.auth_middleware)] = publishable_key_creates_payment_methods
    middlewares.append(our_stripe_js)


def command(
    store: Path,
    port: int,
    *,
    from_scratch: bool = False,
    webhook_url: str | None = None,
    webhook_secret: str | None = None,
) -> list[str]:
    """The command line that runs this module as a server; with a webhook URL and its
    signing secret, it posts every event there."""
    if (webhook_url is None) != (webhook_secret is None):
        raise ValueError(WEBHOOK_OPTIONS_PAIRED)
    args = [sys.executable, "-m", __name__, "--store", str(store), "--port", str(port)]
    if from_scratch:
        args.append("--from-scratch")
    if webhook_url is not None and webhook_secret is not None:
        args += ["--webhook-url", webhook_url, "--webhook-secret", webhook_secret]
    return args


@contextmanager
def running(
    store: Path,
    *,
    from_scratch: bool = True,
    webhook_url: str | None = None,
    webhook_secret: str | None = None,
) -> Iterator[str]:
    """A localstripe child process for a test, on a free port; yields its API base URL.

    Stopped with SIGTERM at the end (so it writes its store, as on any clean stop); its
    output goes to a log beside the store. An event made less than a second before the
    end is never posted to the webhook (see the module's docstring)."""
    port = free_port()
    argv = command(
        store,
        port,
        from_scratch=from_scratch,
        webhook_url=webhook_url,
        webhook_secret=webhook_secret,
    )
    store.parent.mkdir(parents=True, exist_ok=True)
    server = Process(
        argv,
        cwd=store.parent,
        env=os.environ,
        log_path=store.with_suffix(".log"),
        name="localstripe",
        port=port,
    )
    with server:
        server.wait_listening(timeout=20)
        yield server.url


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, required=True, help="this instance's state file")
    parser.add_argument("--webhook-url", help="where every event is posted")
    parser.add_argument("--webhook-secret", help="the secret its Stripe-Signature is made with")
    ours, rest = parser.parse_known_args(argv)
    if (ours.webhook_url is None) != (ours.webhook_secret is None):
        parser.error(WEBHOOK_OPTIONS_PAIRED)
    ours.store.parent.mkdir(parents=True, exist_ok=True)
    _use_store(ours.store.resolve())
    _learn_stripe_behaviours()
    # Imported here: command() and running() (tests, the stack) need none of aiohttp.
    from localstripe import server
    from localstripe.webhooks import register_webhook

    _serve_our_stripe_js_and_payment_methods(server)
    if ours.webhook_url is not None:
        register_webhook("ticketing", ours.webhook_url, ours.webhook_secret, None)  # all events
    sys.argv = ["localstripe", *rest]  # --port, --from-scratch: localstripe's own options
    server.start()


if __name__ == "__main__":
    main()
