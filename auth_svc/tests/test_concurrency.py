"""Races against a live server: real threads, real connections, the real database."""

import hashlib
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
import requests
from django.db import connection, transaction
from django.utils import timezone

from shared_lib.errors import BadRequest
from tests.factories import make_user
from users import services
from users.models import PasswordReset, User

pytestmark = pytest.mark.django_db(transaction=True)

RACERS = 8


def test_simultaneous_signups_with_one_email_yield_exactly_one_account(live_server, settings):
    settings.RATE_LIMIT_SIGNUP = settings.RATE_LIMIT_EMAIL = "1000/min"
    url = f"{live_server.url}/api/users/signup"

    def sign_up(index):
        email = "race@example.com" if index % 2 else "RACE@example.com"
        return requests.post(
            url, json={"email": email, "password": f"long secret {index}"}, timeout=30
        )

    with ThreadPoolExecutor(max_workers=RACERS) as pool:
        responses = list(pool.map(sign_up, range(RACERS)))

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [400] * (RACERS - 1)
    for response in responses:
        if response.status_code == 400:
            assert response.json() == {
                "errors": [{"message": services.EMAIL_IN_USE, "field": "email"}]
            }
    assert User.objects.filter(email="race@example.com").count() == 1
    assert User.objects.count() == 1


def _waiting_on_a_lock() -> bool:
    """Whether another session of this database is waiting for a lock (the race is on)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")  # fresh, inside a transaction too
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0] > 0


def _wait_until_blocked() -> None:
    deadline = time.monotonic() + 10
    while not _waiting_on_a_lock():
        assert time.monotonic() < deadline, "the other session never waited"
        time.sleep(0.02)


def _in_a_thread(call):
    """`call`'s result or the exception it raised, closing the thread's connection."""

    def run():
        try:
            return call()
        except Exception as error:  # returned for the test to assert on
            return error
        finally:
            connection.close()

    return run


def _expired_link(user, token):
    return PasswordReset.objects.create(
        user=user,
        token_hash=hashlib.sha256(token.encode()).hexdigest(),
        expires_at=timezone.now() - timedelta(seconds=1),
    )


def test_a_link_deleted_while_its_confirmation_waits_is_refused_not_a_500():
    user = make_user()
    token = "expired-link-token"
    link = _expired_link(user, token)
    confirm = _in_a_thread(
        lambda: services.password_reset_confirm(token=token, password="a brand new phrase")
    )

    with ThreadPoolExecutor(max_workers=1) as pool:
        with transaction.atomic():
            User.objects.select_for_update().get(id=user.id)  # a reset request's turn
            confirming = pool.submit(confirm)
            _wait_until_blocked()
            link.delete()  # what that request does with its user's expired links
        outcome = confirming.result(timeout=10)

    assert isinstance(outcome, BadRequest), outcome
    assert (outcome.message, outcome.field) == (services.RESET_INVALID, "token")


def test_a_reset_request_waits_for_its_user_before_touching_their_links():
    # A confirmation holds the user's row and then spends their links; a request that
    # locked a link first and then needed the user's row would deadlock with it.
    user = make_user()
    link = _expired_link(user, "expired-link-token")
    request = _in_a_thread(lambda: services.password_reset_request(email=user.email))

    with ThreadPoolExecutor(max_workers=1) as pool:
        with transaction.atomic():
            User.objects.select_for_update().get(id=user.id)  # a confirmation's turn
            requesting = pool.submit(request)
            _wait_until_blocked()
            free = PasswordReset.objects.select_for_update(nowait=True).filter(id=link.id)
            assert [r.id for r in free] == [link.id]
        outcome = requesting.result(timeout=10)

    assert outcome is None
    assert not PasswordReset.objects.filter(id=link.id).exists()  # then its turn came
    assert PasswordReset.objects.filter(user=user).count() == 1
