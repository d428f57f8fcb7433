import time
import uuid

import jwt
import pytest
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpResponse

from shared_lib import auth
from shared_lib.auth import (
    SESSION_COOKIE,
    SessionUser,
    clear_session_cookie,
    mint_session_token,
    session_renewal_due,
    set_session_cookie,
    verify_session_token,
)
from shared_lib.testing.plugin import generate_keypair
from shared_lib.testing.tokens import ALICE, ATTACKS, BOB, claims, signed

NOT_AUTHORIZED = {"errors": [{"message": "Not authorized"}]}


def send(client, token: str, transport: str) -> None:
    if transport == "cookie":
        client.cookies[SESSION_COOKIE] = token
    else:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")


def current_user(client) -> dict | None:
    response = client.get("/api/demo/current-user")
    assert response.status_code == 200
    return response.json()["currentUser"]


@pytest.mark.parametrize("transport", ["cookie", "bearer"])
def test_a_valid_token_signs_the_user_in(api_client, make_token, settings, transport):
    now = int(time.time())
    send(api_client, make_token(user_id=ALICE, email="alice@example.com", now=now), transport)

    response = api_client.get("/api/demo/whoami")

    assert response.status_code == 200
    assert response.json() == {"id": ALICE, "email": "alice@example.com"}
    assert current_user(api_client) == {
        "id": ALICE,
        "email": "alice@example.com",
        "iat": now,
        "exp": now + settings.SESSION_TTL_SECONDS,
    }


def test_the_bearer_scheme_is_case_insensitive(api_client, make_token):
    api_client.credentials(HTTP_AUTHORIZATION=f"bearer {make_token(user_id=ALICE)}")

    assert api_client.get("/api/demo/whoami").json()["id"] == ALICE


def test_bearer_wins_over_the_cookie(api_client, make_token):
    api_client.cookies[SESSION_COOKIE] = make_token(user_id=ALICE, email="alice@example.com")
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {make_token(user_id=BOB, email='b@x.io')}")

    response = api_client.get("/api/demo/whoami")

    assert response.status_code == 200
    assert response.json() == {"id": BOB, "email": "b@x.io"}
    assert current_user(api_client)["id"] == BOB


def test_an_invalid_bearer_is_not_rescued_by_a_valid_cookie(api_client, make_token):
    api_client.cookies[SESSION_COOKIE] = make_token(user_id=ALICE)
    api_client.credentials(HTTP_AUTHORIZATION="Bearer not-a-token")

    response = api_client.get("/api/demo/whoami")

    assert response.status_code == 401
    assert response.json() == NOT_AUTHORIZED
    assert current_user(api_client) is None


def test_another_authorization_scheme_leaves_the_cookie_in_charge(api_client, make_token):
    api_client.cookies[SESSION_COOKIE] = make_token(user_id=ALICE)
    api_client.credentials(HTTP_AUTHORIZATION="Basic YWxpY2U6cGFzc3dvcmQ=")

    assert api_client.get("/api/demo/whoami").json()["id"] == ALICE


@pytest.mark.parametrize("header", ["Bearer ", "Bearer", "Bearer    "])
def test_an_empty_bearer_is_anonymous(api_client, session_keys, header):
    api_client.credentials(HTTP_AUTHORIZATION=header)

    response = api_client.get("/api/demo/whoami")

    assert response.status_code == 401
    assert response.json() == NOT_AUTHORIZED
    assert current_user(api_client) is None


def test_an_empty_cookie_is_anonymous(api_client, session_keys):
    api_client.cookies[SESSION_COOKIE] = ""

    assert api_client.get("/api/demo/whoami").status_code == 401
    assert current_user(api_client) is None


@pytest.mark.parametrize("transport", ["cookie", "bearer"])
@pytest.mark.parametrize("attack", list(ATTACKS))
def test_a_token_that_does_not_verify_is_anonymous(api_client, session_keys, attack, transport):
    send(api_client, ATTACKS[attack](session_keys), transport)

    response = api_client.get("/api/demo/whoami")

    assert response.status_code == 401
    assert response.json() == NOT_AUTHORIZED
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'
    assert current_user(api_client) is None


def test_the_claims_the_attacks_start_from_do_sign_in_when_properly_signed(session_keys):
    # Guards the table above: its tokens fail for the attack, not for their claims.
    values = claims()

    assert verify_session_token(signed(session_keys, values)) == SessionUser(**values)


def test_verify_returns_the_canonical_uuid(session_keys):
    token = signed(session_keys, claims(id=ALICE.upper()))

    assert verify_session_token(token).id == ALICE


def test_a_session_user_is_authenticated_and_keyed_by_id():
    user = SessionUser(id=ALICE, email="alice@example.com", iat=1, exp=2)

    assert user.is_authenticated is True
    assert user.is_anonymous is False
    assert user.pk == ALICE
    assert user.as_dict() == {"id": ALICE, "email": "alice@example.com", "iat": 1, "exp": 2}


def test_mint_signs_the_claims_for_the_session_lifetime(session_keys, settings):
    settings.SESSION_TTL_SECONDS = 120

    token = mint_session_token(
        user_id=uuid.UUID(ALICE), email="alice@example.com", session_id=BOB, now=1_000
    )

    assert jwt.get_unverified_header(token)["alg"] == "EdDSA"
    assert jwt.decode(
        token, session_keys.public_pem, algorithms=["EdDSA"], options={"verify_exp": False}
    ) == {"id": ALICE, "email": "alice@example.com", "iat": 1_000, "exp": 1_120, "sid": BOB}


def test_mint_uses_the_current_time_by_default(make_token, settings):
    before = int(time.time())

    user = verify_session_token(make_token(user_id=ALICE))

    assert before <= user.iat <= int(time.time())
    assert user.exp == user.iat + settings.SESSION_TTL_SECONDS


def test_mint_with_a_key_and_lifetime_of_its_own_needs_neither_setting(session_keys, settings):
    del settings.JWT_PRIVATE_KEY
    del settings.SESSION_TTL_SECONDS

    token = mint_session_token(
        user_id=ALICE,
        email="alice@example.com",
        session_id=BOB,
        now=1_000,
        private_pem=session_keys.private_pem,
        ttl_seconds=3_600,
    )

    assert jwt.decode(
        token, session_keys.public_pem, algorithms=["EdDSA"], options={"verify_exp": False}
    ) == {"id": ALICE, "email": "alice@example.com", "iat": 1_000, "exp": 4_600, "sid": BOB}


@pytest.mark.parametrize("value", [None, ""])
def test_mint_without_a_private_key_is_refused(settings, value):
    if value is None:
        del settings.JWT_PRIVATE_KEY
    else:
        settings.JWT_PRIVATE_KEY = value

    with pytest.raises(ImproperlyConfigured, match="JWT_PRIVATE_KEY"):
        mint_session_token(user_id=ALICE, email="alice@example.com")


@pytest.mark.parametrize("secure", [True, False])
def test_the_session_cookie_attributes(settings, secure):
    settings.SESSION_COOKIE_SECURE = secure
    settings.SESSION_TTL_SECONDS = 600
    response = HttpResponse()

    set_session_cookie(response, "the-token")

    cookie = response.cookies[SESSION_COOKIE]
    assert cookie.value == "the-token"
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Lax"
    assert cookie["path"] == "/"
    assert cookie["max-age"] == 600
    assert cookie["secure"] == (True if secure else "")
    assert cookie["domain"] == ""


def test_clearing_the_session_cookie_expires_it_on_the_same_path(settings):
    response = HttpResponse()

    clear_session_cookie(response)

    cookie = response.cookies[SESSION_COOKIE]
    assert cookie.value == ""
    assert cookie["max-age"] == 0
    assert cookie["expires"] == "Thu, 01 Jan 1970 00:00:00 GMT"
    assert cookie["path"] == "/"
    assert cookie["samesite"] == "Lax"


# --- the optional staff claim (admin single sign-on) -----------------------------------


def test_a_staff_token_carries_the_claim_and_a_plain_one_does_not(session_keys):
    staff = mint_session_token(user_id=ALICE, email="alice@example.com", staff=True, now=1_000)
    plain = mint_session_token(user_id=BOB, email="bob@example.com", now=1_000)

    def decoded(token: str) -> dict:
        return jwt.decode(
            token, session_keys.public_pem, algorithms=["EdDSA"], options={"verify_exp": False}
        )

    assert decoded(staff)["staff"] is True
    assert "staff" not in decoded(plain)  # byte for byte what tokens were before the claim


def test_the_staff_claim_is_read_into_the_session_user(session_keys):
    assert verify_session_token(signed(session_keys, claims(staff=True))).staff is True
    assert verify_session_token(signed(session_keys, claims(staff=False))).staff is False


def test_a_token_without_the_staff_claim_is_a_non_staff_user(session_keys):
    # Tokens minted before the claim existed keep working, and mean "not staff".
    user = verify_session_token(signed(session_keys, claims()))

    assert user == SessionUser(**claims(), staff=False)
    assert user.staff is False


def test_the_public_shape_of_a_session_user_leaves_staff_out():
    user = SessionUser(id=ALICE, email="alice@example.com", iat=1, exp=2, staff=True)

    assert user.as_dict() == {"id": ALICE, "email": "alice@example.com", "iat": 1, "exp": 2}


# --- the session id (only auth_svc keeps sessions; SESSION_CHECK asks it) ------------------


def decoded(token: str, public_pem: str) -> dict:
    return jwt.decode(token, public_pem, algorithms=["EdDSA"], options={"verify_exp": False})


def test_every_token_names_a_session_a_fresh_one_unless_given(session_keys):
    first = mint_session_token(user_id=ALICE, email="alice@example.com")
    second = mint_session_token(user_id=ALICE, email="alice@example.com")

    sids = [decoded(token, session_keys.public_pem)["sid"] for token in (first, second)]
    assert sids[0] != sids[1]
    assert all(str(uuid.UUID(sid)) == sid for sid in sids)
    assert verify_session_token(first).sid == sids[0]


def test_mint_caps_the_token_at_the_sessions_end(session_keys, settings):
    settings.SESSION_TTL_SECONDS = 900

    capped = mint_session_token(user_id=ALICE, email="a@x.io", now=1_000, not_after=1_300)
    uncapped = mint_session_token(user_id=ALICE, email="a@x.io", now=1_000, not_after=5_000)

    assert decoded(capped, session_keys.public_pem)["exp"] == 1_300
    assert decoded(uncapped, session_keys.public_pem)["exp"] == 1_900


def test_the_session_id_is_read_canonical(session_keys):
    token = signed(session_keys, claims(sid="{" + BOB.upper() + "}"))

    assert verify_session_token(token).sid == BOB


@pytest.mark.parametrize(
    "sid", ["garbage", "", 42, 4.2, True, [BOB], {"id": BOB}, "0" * 100_000, BOB + "0"]
)
def test_a_malformed_session_id_is_anonymous_everywhere(api_client, session_keys, sid):
    api_client.cookies[SESSION_COOKIE] = signed(session_keys, claims(sid=sid))

    assert verify_session_token(api_client.cookies[SESSION_COOKIE].value) is None
    assert current_user(api_client) is None
    assert api_client.get("/api/demo/whoami").status_code == 401


def test_a_token_without_a_session_id_still_signs_in_where_sessions_are_not_kept(
    api_client, session_keys
):
    # Tokens minted before sessions existed: accepted until their `exp` by every service
    # but auth_svc (whose SESSION_CHECK refuses them).
    api_client.cookies[SESSION_COOKIE] = signed(session_keys, claims())

    assert api_client.get("/api/demo/whoami").json() == {"id": ALICE, "email": "alice@example.com"}


refused_sessions: set[str] = set()


def refuse_listed(session: SessionUser) -> bool:
    """A SESSION_CHECK for the tests: every session but the listed ones is live."""
    return session.sid not in refused_sessions


def test_session_check_decides_for_every_verified_token(api_client, make_token, settings):
    settings.SESSION_CHECK = "tests.test_auth.refuse_listed"
    ended, live = str(uuid.uuid4()), str(uuid.uuid4())
    refused_sessions.add(ended)
    try:
        api_client.cookies[SESSION_COOKIE] = make_token(user_id=ALICE, session_id=ended)
        refused = api_client.get("/api/demo/whoami")
        api_client.cookies[SESSION_COOKIE] = make_token(user_id=ALICE, session_id=live)
        accepted = api_client.get("/api/demo/whoami")
    finally:
        refused_sessions.discard(ended)

    assert refused.status_code == 401
    assert refused.json() == NOT_AUTHORIZED
    assert accepted.status_code == 200
    assert accepted.json()["id"] == ALICE


def test_the_session_cookie_can_live_as_long_as_a_shorter_token(settings):
    response = HttpResponse()

    set_session_cookie(response, "the-token", max_age=42)

    assert response.cookies[SESSION_COOKIE]["max-age"] == 42


@pytest.mark.parametrize(("now", "due"), [(1000, False), (1450, False), (1451, True), (1899, True)])
def test_session_renewal_is_due_after_half_the_tokens_life(now, due):
    session = SessionUser(id=ALICE, email="alice@example.com", iat=1000, exp=1900)

    assert session_renewal_due(session, now=now) is due


def _wait_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.time()) + 0.05)


def test_a_verified_token_is_kept_and_read_back_without_verifying_again(session_keys):
    token = mint_session_token(user_id=ALICE, email="a@x.io")

    first = verify_session_token(token)

    assert first is not None
    assert first.id == ALICE
    assert verify_session_token(token) is first


def test_a_kept_token_still_expires_at_its_exp(session_keys):
    now = int(time.time())
    token = mint_session_token(user_id=ALICE, email="a@x.io", now=now, not_after=now + 1)
    assert verify_session_token(token).exp == now + 1

    _wait_until(now + 1)

    assert verify_session_token(token) is None


def test_a_kept_token_does_not_verify_under_another_public_key(session_keys, settings):
    token = mint_session_token(user_id=ALICE, email="a@x.io")
    assert verify_session_token(token) is not None

    settings.JWT_PUBLIC_KEY = generate_keypair().public_pem

    assert verify_session_token(token) is None


def test_a_token_issued_ahead_of_this_clock_verifies_once_the_clock_catches_up(session_keys):
    # A refusal is never kept: the issuer's clock may run a little ahead of this one.
    issued = int(time.time()) + 1
    token = mint_session_token(user_id=ALICE, email="a@x.io", now=issued)
    assert verify_session_token(token) is None

    _wait_until(issued)

    assert verify_session_token(token).iat == issued


def test_the_kept_tokens_are_bounded(session_keys, monkeypatch):
    monkeypatch.setattr(auth, "_VERIFIED_MAX", 3)
    auth._verified.clear()
    tokens = [mint_session_token(user_id=ALICE, email=f"{n}@x.io") for n in range(7)]

    for token in tokens:
        assert verify_session_token(token) is not None
        assert len(auth._verified) <= 3

    assert verify_session_token(tokens[0]).email == "0@x.io"
