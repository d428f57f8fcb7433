"""Races against a live server: real threads, real connections, the real database."""

from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from users import services
from users.models import User

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
