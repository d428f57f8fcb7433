"""Forged session tokens every service's tests throw at its auth (none may sign anybody in).

from shared_lib.testing.tokens import ATTACKS
@pytest.mark.parametrize("attack", list(ATTACKS))
def test_forged(api_client, session_keys, attack): token = ATTACKS[attack](session_keys)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable

import jwt

from shared_lib.testing.plugin import KeyPair, generate_keypair

ALICE = "0b7e6f5c-2f4e-4c8e-9d57-5a3f1d8e6a01"
BOB = "6a1d0c52-93f4-4c52-a3b0-0c9f6f1e2b77"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def segment(value: dict) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def hs256(claims: dict, secret: bytes) -> str:
    """An HS256 token signed by hand (PyJWT refuses to use a PEM as an HMAC secret)."""
    signing_input = f"{segment({'alg': 'HS256', 'typ': 'JWT'})}.{segment(claims)}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


def claims(**overrides: object) -> dict:
    now = int(time.time())
    return {"id": ALICE, "email": "alice@example.com", "iat": now, "exp": now + 900, **overrides}


def without(name: str) -> dict:
    values = claims()
    del values[name]
    return values


def signed(keys: KeyPair, values: dict) -> str:
    return jwt.encode(values, keys.private_pem, algorithm="EdDSA")


def tampered(keys: KeyPair) -> str:
    header, _, signature = signed(keys, claims(id=BOB, email="bob@example.com")).split(".")
    return f"{header}.{segment(claims())}.{signature}"


# Each builds, from the service's real key pair, a token that must not sign anybody in.
ATTACKS: dict[str, Callable[[KeyPair], str]] = {
    "alg-none": lambda k: f"{segment({'alg': 'none', 'typ': 'JWT'})}.{segment(claims())}.",
    "alg-None": lambda k: f"{segment({'alg': 'None', 'typ': 'JWT'})}.{segment(claims())}.",
    "eddsa-without-signature": lambda k: signed(k, claims()).rsplit(".", 1)[0] + ".",
    "hs256-public-key-as-secret": lambda k: hs256(claims(), k.public_pem.encode()),
    "hs256-guessed-secret": lambda k: hs256(claims(), b"secret"),
    "another-ed25519-key": lambda k: signed(generate_keypair(), claims()),
    "expired": lambda k: signed(k, claims(iat=int(time.time()) - 1000, exp=int(time.time()) - 1)),
    "issued-in-the-future": lambda k: signed(
        k, claims(iat=int(time.time()) + 3600, exp=int(time.time()) + 4500)
    ),
    "tampered-payload": tampered,
    "missing-id": lambda k: signed(k, without("id")),
    "missing-email": lambda k: signed(k, without("email")),
    "missing-iat": lambda k: signed(k, without("iat")),
    "missing-exp": lambda k: signed(k, without("exp")),
    "non-uuid-id": lambda k: signed(k, claims(id="42")),
    "integer-id": lambda k: signed(k, claims(id=42)),
    "non-string-email": lambda k: signed(k, claims(email=["alice@example.com"])),
    "string-exp": lambda k: signed(k, claims(exp=str(int(time.time()) + 900))),
    "list-exp": lambda k: signed(k, claims(exp=[int(time.time()) + 900])),
    "garbage": lambda k: "not-a-token",
    "three-garbage-segments": lambda k: "a.b.c",
    "payload-not-an-object": lambda k: jwt.api_jws.encode(b"[1, 2]", k.private_pem, "EdDSA"),
    # `staff` is optional, but only ever a JSON boolean.
    "string-staff": lambda k: signed(k, claims(staff="true")),
    "integer-staff": lambda k: signed(k, claims(staff=1)),
    "null-staff": lambda k: signed(k, claims(staff=None)),
    # `sid` is optional (tokens from before sessions), but only ever a UUID string.
    "non-uuid-sid": lambda k: signed(k, claims(sid="garbage")),
    "empty-sid": lambda k: signed(k, claims(sid="")),
    "integer-sid": lambda k: signed(k, claims(sid=42)),
    "list-sid": lambda k: signed(k, claims(sid=[ALICE])),
    "oversized-sid": lambda k: signed(k, claims(sid="0" * 100_000)),
    "sql-in-sid": lambda k: signed(k, claims(sid="' OR 1=1 --")),
}


def staff_claims(**overrides: object) -> dict:
    return claims(staff=True, **overrides)


def staff_tampered(keys: KeyPair) -> str:
    """A genuine non-staff token whose payload was edited to say `staff: true`."""
    header, _, signature = signed(keys, claims()).split(".")
    return f"{header}.{segment(staff_claims())}.{signature}"


# Tokens that say `staff: true` without auth_svc having signed that: none may open an admin.
STAFF_ATTACKS: dict[str, Callable[[KeyPair], str]] = {
    "alg-none": lambda k: f"{segment({'alg': 'none', 'typ': 'JWT'})}.{segment(staff_claims())}.",
    "hs256-public-key-as-secret": lambda k: hs256(staff_claims(), k.public_pem.encode()),
    "another-ed25519-key": lambda k: signed(generate_keypair(), staff_claims()),
    "expired": lambda k: signed(
        k, staff_claims(iat=int(time.time()) - 1000, exp=int(time.time()) - 1)
    ),
    "tampered-payload": staff_tampered,
    "eddsa-without-signature": lambda k: signed(k, staff_claims()).rsplit(".", 1)[0] + ".",
    "string-staff": lambda k: signed(k, claims(staff="true")),
}
