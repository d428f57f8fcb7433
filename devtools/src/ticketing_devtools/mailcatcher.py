"""A local SMTP server that keeps what it is sent: `make up`'s mail catcher, and the real
SMTP server the tests send through.

    python -m ticketing_devtools.mailcatcher --port 1025 --dir var/run/.../mail

Every message it accepts is written to the directory as <n>-<time>.eml (any mail client
opens one; `read_mail` parses them back). It relays nothing: mail sent locally stays here.
A test can have it refuse a recipient with the reply a real server would give
(`catcher.refuse[address] = "550 5.1.1 ..."`).
"""

from __future__ import annotations

import argparse
import email
import email.policy
import itertools
import signal
import threading
import time
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller


class _Keeper:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.refuse: dict[str, str] = {}  # recipient -> the SMTP reply refusing it
        self._numbers = itertools.count(_next_number(directory))
        self._lock = threading.Lock()

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self._lock:
            name = f"{next(self._numbers):06d}-{time.strftime('%Y%m%dT%H%M%S')}.eml"
        # Written whole, then renamed: a reader never sees half a message. Unix line
        # endings (SMTP's are CRLF), as files on this machine have them.
        partial = self.directory / f".{name}"
        raw = envelope.original_content or envelope.content
        partial.write_bytes(raw.replace(b"\r\n", b"\n"))
        partial.rename(self.directory / name)
        return "250 Message accepted for delivery"


def _next_number(directory: Path) -> int:
    numbers = [int(p.name.split("-", 1)[0]) for p in directory.glob("*.eml")]
    return max(numbers, default=0) + 1


class MailCatcher:
    """The SMTP server on 127.0.0.1:`port`, keeping messages in `directory`."""

    def __init__(self, directory: Path, port: int) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.port = port
        keeper = _Keeper(directory)
        self.refuse = keeper.refuse
        self._controller = Controller(keeper, hostname="127.0.0.1", port=port)

    def start(self) -> MailCatcher:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def messages(self) -> list[EmailMessage]:
        return read_mail(self.directory)


def read_mail(directory: Path) -> list[EmailMessage]:
    """The messages kept in `directory`, oldest first."""
    return [
        email.message_from_bytes(path.read_bytes(), policy=email.policy.default)  # type: ignore[misc]
        for path in sorted(directory.glob("*.eml"))
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=1025)
    parser.add_argument("--dir", type=Path, required=True)
    args = parser.parse_args(argv)
    catcher = MailCatcher(args.dir, args.port).start()
    print(f"mail catcher: SMTP on 127.0.0.1:{args.port}, messages in {args.dir}", flush=True)
    stopped = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopped.set())
    stopped.wait()
    catcher.stop()


if __name__ == "__main__":
    main()
