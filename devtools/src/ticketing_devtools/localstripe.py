"""localstripe (the fake Stripe server from PyPI) with a store of its own.

    python -m ticketing_devtools.localstripe --store var/run/x/stripe.pickle --port 8420

Upstream keeps its state in one hard-coded file, /tmp/localstripe.pickle, rewritten on
every change and read back at start: every instance on a machine (a `make up`, a test
stack, the payments suite, a benchmark) would share it — one instance's charges showing
up in another's ledger, and two writing at once truncating it so the next start fails
("pickle data was truncated"). Here each instance gets its own file, written atomically.
"""

from __future__ import annotations

import argparse
import os
import pickle
import sys
from pathlib import Path
from typing import Any

from localstripe import resources, server


def _use_store(path: Path) -> None:
    def load(store: Any) -> None:
        try:
            with path.open("rb") as f:
                saved = pickle.load(f)  # noqa: S301 (our own file, written below)
        except FileNotFoundError:
            return
        store.clear()
        store.update(saved)

    def dump(store: Any) -> None:
        partial = path.with_suffix(".partial")
        with partial.open("wb") as f:
            pickle.dump(dict(store), f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(partial, path)  # a reader never sees half a file

    resources.Store.try_load_from_disk = load
    resources.Store.dump_to_disk = dump


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, required=True, help="this instance's state file")
    ours, rest = parser.parse_known_args(argv)
    ours.store.parent.mkdir(parents=True, exist_ok=True)
    _use_store(ours.store.resolve())
    sys.argv = ["localstripe", *rest]  # --port, --from-scratch: localstripe's own options
    server.start()


if __name__ == "__main__":
    main()
