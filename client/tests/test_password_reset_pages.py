"""The password reset pages over a recorded API."""

import json

from django.contrib.messages import get_messages

from shared_lib.auth import SESSION_COOKIE
from storefront.views import PASSWORD_CHANGED, RESET_SENT
from tests.conftest import url_of
from tests.test_pages import browser

INVALID_LINK = "This password reset link is invalid or has expired"


def test_the_sign_in_page_offers_a_reset_and_the_sign_up_page_does_not(recorder, settings):
    settings.API_BASE_URL = url_of(recorder)

    signin = browser().get("/auth/signin").content.decode()
    signup = browser().get("/auth/signup").content.decode()

    assert 'href="/auth/reset">Forgot your password?</a>' in signin
    assert "Forgot your password?" not in signup


def test_asking_for_a_link_says_the_same_whoever_asks(recorder, settings):
    settings.API_BASE_URL = url_of(recorder)
    recorder.answers.append((202, [], b"{}"))

    response = browser().post("/auth/reset", {"email": "dee@example.com"})

    assert (response.status_code, response["Location"]) == (302, "/auth/signin")
    assert [m.message for m in get_messages(response.wsgi_request)] == [RESET_SENT]
    [(method, path, _, body)] = recorder.seen
    assert (method, path, json.loads(body)) == (
        "POST",
        "/api/users/password-reset",
        {"email": "dee@example.com"},
    )


def test_a_refused_email_is_shown_next_to_its_field(recorder, settings):
    settings.API_BASE_URL = url_of(recorder)
    body = {"errors": [{"message": "Email must be valid", "field": "email"}]}
    recorder.answers.append((400, [], json.dumps(body).encode()))

    response = browser().post("/auth/reset", {"email": "nope"})

    assert response.status_code == 400
    page = response.content.decode()
    assert 'id="id_email-errors"' in page
    assert "Email must be valid" in page


def test_a_new_password_through_the_link_signs_the_browser_out(recorder, settings, tokens):
    settings.API_BASE_URL = url_of(recorder)
    recorder.answers.append((204, [], b""))
    client = browser()
    client.cookies[SESSION_COOKIE] = tokens(email="dee@example.com")

    response = client.post("/auth/reset/tok-123_abc", {"password": "a brand new phrase"})

    assert (response.status_code, response["Location"]) == (302, "/auth/signin")
    assert [m.message for m in get_messages(response.wsgi_request)] == [PASSWORD_CHANGED]
    assert response.cookies[SESSION_COOKIE].value == ""
    [(method, path, _, body)] = recorder.seen
    assert (method, path, json.loads(body)) == (
        "POST",
        "/api/users/password-reset/confirm",
        {"token": "tok-123_abc", "password": "a brand new phrase"},
    )


def test_a_spent_link_says_so_and_offers_a_new_one(recorder, settings):
    settings.API_BASE_URL = url_of(recorder)
    body = {"errors": [{"message": INVALID_LINK, "field": "token"}]}
    recorder.answers.append((400, [], json.dumps(body).encode()))

    response = browser().post("/auth/reset/spent", {"password": "a brand new phrase"})

    assert response.status_code == 400
    page = response.content.decode()
    assert INVALID_LINK in page
    assert 'href="/auth/reset">Ask for a new link</a>' in page
