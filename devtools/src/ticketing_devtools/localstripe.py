"""localstripe (the fake Stripe server from PyPI) with a store of its own.

    python -m ticketing_devtools.localstripe --store var/run/x/stripe.pickle --port 8420
    with running(tmp_path / "stripe.pickle") as api_base: ...   # a test's own, on a free port

Upstream keeps its state in one hard-coded file, /tmp/localstripe.pickle, rewritten on
every change and read back at start: every instance on a machine (a `make up`, a test
stack, the payments suite, a benchmark) would share it — one instance's charges showing
up in another's ledger, and two writing at once truncating it so the next start fails
("pickle data was truncated"). Here each instance gets its own file, written atomically.

Upstream also lacks some of Stripe's behaviour that payments_svc relies on (card tokens
made into PaymentMethods, cards declined on charge, `charge_already_refunded`, searching
PaymentIntents by metadata): _learn_stripe_behaviours adds it.

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

# Stripe's test card tokens (https://docs.stripe.com/testing#cards): a token any test
# account may use any number of times, by the card number it stands for. 16-digit cards
# only (localstripe's cards are 16 digits).
TEST_TOKENS = {
    "tok_visa": "4242424242424242",
    "tok_visa_debit": "4000056655665556",
    "tok_mastercard": "5555555555554444",
    "tok_mastercard_debit": "5200828282828210",
    "tok_chargeDeclined": "4000000000000002",
    "tok_chargeDeclinedInsufficientFunds": "4000000000009995",
    "tok_chargeCustomerFail": "4000000000000341",
}
# Cards Stripe declines when charged (as well as when attached): upstream declines them
# only on attach, so a PaymentIntent with one would succeed there and not at Stripe.
DECLINED_ON_CHARGE = frozenset(
    {
        "4000000000000002",  # generic decline
        "4000000000009995",  # insufficient funds
        "4000000000009987",  # lost card
        "4000000000009979",  # stolen card
        "4000000000000069",  # expired card
        "4000000000000127",  # incorrect CVC
        "4000000000000119",  # processing error
    }
)


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
    - Cards that decline on charge really decline (DECLINED_ON_CHARGE).
    - A refund of a charge already refunded in full fails with `charge_already_refunded`
      (upstream refunds it again), and one of an intent never charged fails cleanly.
    - `GET /v1/payment_intents/search` for `metadata['key']:'value'` clauses (AND-ed).
    """
    from localstripe import resources
    from localstripe.errors import UserError

    payment_method_init = resources.PaymentMethod.__init__

    def payment_method_from_token(self: Any, type: Any = None, card: Any = None, **kw: Any):
        if type == "card" and isinstance(card, dict) and set(card) == {"token"}:
            card = _card_of_token(card["token"])
        payment_method_init(self, type=type, card=card, **kw)

    def _card_of_token(token: Any) -> dict[str, str]:
        number = TEST_TOKENS.get(token) if isinstance(token, str) else None
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
        return {"number": number, "exp_month": "12", "exp_year": "2030", "cvc": "123"}

    resources.PaymentMethod.__init__ = payment_method_from_token

    charging_is_declined = resources.PaymentMethod._charging_is_declined

    def declined_on_charge(self: Any) -> bool:
        if self.type == "card" and self._card_number in DECLINED_ON_CHARGE:
            return True
        return charging_is_declined(self)

    resources.PaymentMethod._charging_is_declined = declined_on_charge

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


def command(store: Path, port: int, *, from_scratch: bool = False) -> list[str]:
    """The command line that runs this module as a server."""
    args = [sys.executable, "-m", __name__, "--store", str(store), "--port", str(port)]
    return [*args, "--from-scratch"] if from_scratch else args


@contextmanager
def running(store: Path, *, from_scratch: bool = True) -> Iterator[str]:
    """A localstripe child process for a test, on a free port; yields its API base URL.

    Stopped with SIGTERM at the end (so it writes its store, as on any clean stop); its
    output goes to a log beside the store."""
    store.parent.mkdir(parents=True, exist_ok=True)
    port = free_port()
    server = Process(
        command(store, port, from_scratch=from_scratch),
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
    ours, rest = parser.parse_known_args(argv)
    ours.store.parent.mkdir(parents=True, exist_ok=True)
    _use_store(ours.store.resolve())
    _learn_stripe_behaviours()
    # Imported here: command() and running() (tests, the stack) need none of aiohttp.
    from localstripe import server

    sys.argv = ["localstripe", *rest]  # --port, --from-scratch: localstripe's own options
    server.start()


if __name__ == "__main__":
    main()
