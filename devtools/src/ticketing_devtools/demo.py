"""Demo data for a running system: a few users and tickets, added through the public API.

    python -m ticketing_devtools.cli demo                   # or: make demo
    python -m ticketing_devtools.cli demo --url http://127.0.0.1:8080

Safe to run again: existing users sign in instead, and a ticket a user already lists is
not listed twice. It goes through the gateway like any client, so every event flows.
"""

from __future__ import annotations

from dataclasses import dataclass

import requests

# Demo accounts only ever exist on a local system; the password is printed on purpose.
DEMO_PASSWORD = "demo-tickets-2026"  # noqa: S105 (local demo only, printed)
PAGE_LIMIT = 100


@dataclass(frozen=True)
class DemoUser:
    email: str
    tickets: tuple[tuple[str, str], ...]  # (title, price)


DEMO_USERS = (
    DemoUser(
        "alice@example.com",
        (
            ("Arctic Monkeys — Wembley, floor standing", "89.50"),
            ("Hamilton — Sat matinee, row F seat 12", "145.00"),
            ("Champions League final — block 112", "650.00"),
        ),
    ),
    DemoUser(
        "bob@example.com",
        (
            ("Jazz at the Blue Note — late set", "35.00"),
            ("Comedy night — two seats together", "48.00"),
        ),
    ),
    DemoUser("carol@example.com", ()),
)


def _session_for(url: str, user: DemoUser) -> requests.Session:
    session = requests.Session()
    body = {"email": user.email, "password": DEMO_PASSWORD}
    response = session.post(f"{url}/api/users/signup", json=body, timeout=10)
    if response.status_code == 400 and "Email in use" in response.text:
        response = session.post(f"{url}/api/users/signin", json=body, timeout=10)
    if response.status_code not in (200, 201):
        raise SystemExit(
            f"Could not sign in {user.email} at {url}: {response.status_code} {response.text}"
        )
    session.user_id = response.json()["id"]  # type: ignore[attr-defined]
    return session


def _listed_titles(url: str, user_id: str) -> set[str]:
    """Titles this user has for sale now, over every page of the listing."""
    titles: set[str] = set()
    next_url: str | None = f"{url}/api/tickets?limit={PAGE_LIMIT}"
    while next_url:
        response = requests.get(next_url, timeout=10)
        response.raise_for_status()
        titles |= {t["title"] for t in response.json() if t["userId"] == user_id}
        next_url = response.links.get("next", {}).get("url")
    return titles


def add_demo_data(url: str) -> list[str]:
    """Create what is missing; return the lines that tell a person how to sign in."""
    url = url.rstrip("/")
    lines = []
    for user in DEMO_USERS:
        session = _session_for(url, user)
        listed = _listed_titles(url, session.user_id)  # type: ignore[attr-defined]
        added = 0
        for title, price in user.tickets:
            if title in listed:
                continue
            response = session.post(
                f"{url}/api/tickets", json={"title": title, "price": price}, timeout=10
            )
            if response.status_code != 201:
                raise SystemExit(
                    f"Could not list {title!r}: {response.status_code} {response.text}"
                )
            added += 1
        lines.append(
            f"  {user.email} / {DEMO_PASSWORD}  ({len(user.tickets)} ticket(s) for sale"
            f"{f', {added} new' if added else ''})"
        )
    return lines
