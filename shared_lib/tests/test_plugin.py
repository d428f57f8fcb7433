import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key

from shared_lib.auth import SESSION_COOKIE, verify_session_token
from shared_lib.redis_client import redis_client
from shared_lib.testing.plugin import generate_keypair

SHARED_LIB_DIR = Path(__file__).resolve().parent.parent


def test_jwt_keypair_is_a_matching_ed25519_pair(jwt_keypair):
    private = load_pem_private_key(jwt_keypair.private_pem.encode(), password=None)
    public = load_pem_public_key(jwt_keypair.public_pem.encode())

    assert isinstance(private, Ed25519PrivateKey)
    assert isinstance(public, Ed25519PublicKey)
    public.verify(private.sign(b"message"), b"message")  # raises on a mismatched pair


def test_generate_keypair_makes_a_new_pair_each_time(jwt_keypair):
    pairs = {generate_keypair().public_pem for _ in range(3)} | {jwt_keypair.public_pem}

    assert len(pairs) == 4


def test_session_keys_put_the_pair_in_settings(session_keys, jwt_keypair, settings):
    assert session_keys is jwt_keypair
    assert jwt_keypair.public_pem == settings.JWT_PUBLIC_KEY
    assert jwt_keypair.private_pem == settings.JWT_PRIVATE_KEY


def test_without_session_keys_the_service_has_no_private_key(settings):
    assert not getattr(settings, "JWT_PRIVATE_KEY", None)


def test_make_token_mints_a_verifiable_token_for_the_given_user(make_token, jwt_keypair, settings):
    settings.SESSION_TTL_SECONDS = 300
    user_id = str(uuid.uuid4())

    session_id = str(uuid.uuid4())

    token = make_token(
        user_id=user_id, email="seller@example.com", now=1_000_000, session_id=session_id
    )

    assert jwt.decode(
        token, jwt_keypair.public_pem, algorithms=["EdDSA"], options={"verify_exp": False}
    ) == {
        "id": user_id,
        "email": "seller@example.com",
        "iat": 1_000_000,
        "exp": 1_000_300,
        "sid": session_id,
    }


def test_make_token_defaults_to_a_new_user_each_time(make_token):
    first, second = verify_session_token(make_token()), verify_session_token(make_token())

    assert first.email == second.email == "user@example.com"
    assert first.id != second.id
    assert str(uuid.UUID(first.id)) == first.id


def test_api_client_is_anonymous(api_client):
    assert SESSION_COOKIE not in api_client.cookies
    assert api_client.get("/api/demo/whoami").status_code == 401


def test_signed_in_client_calls_as_its_user(signed_in_client):
    seller = signed_in_client(email="seller@example.com")
    buyer_id = str(uuid.uuid4())
    buyer = signed_in_client(user_id=buyer_id)

    assert seller.get("/api/demo/whoami").json() == {
        "id": seller.user_id,
        "email": "seller@example.com",
    }
    assert buyer.get("/api/demo/whoami").json() == {"id": buyer_id, "email": "user@example.com"}
    assert buyer.user_id == buyer_id
    assert buyer.email == "user@example.com"
    assert seller.user_id != buyer_id


def test_redis_keys_gives_each_test_a_fresh_prefix(redis_keys, settings):
    assert redis_keys == settings.RATE_LIMIT_KEY_PREFIX
    assert redis_keys.startswith("test:")
    assert list(redis_client().scan_iter(f"{redis_keys}:*")) == []


INNER_TEST = """
    import os

    from shared_lib.redis_client import redis_client


    def test_leaves_keys_behind(redis_keys):
        client = redis_client()
        client.set(f"{redis_keys}:plain", 1)
        client.zadd(f"{redis_keys}:demo-ip:127.0.0.1", {"member": 1})
        with open(os.environ["PREFIX_OUT"], "w") as out:
            out.write(redis_keys)
"""


def test_redis_keys_deletes_the_prefix_keys_afterwards(tmp_path):
    # The cleanup runs at fixture teardown, so a separate pytest run has to observe it.
    inner = tmp_path / "test_inner.py"
    inner.write_text(textwrap.dedent(INNER_TEST))
    prefix_out = tmp_path / "prefix"
    bystander = f"test:{uuid.uuid4().hex}-other:kept"
    client = redis_client()
    client.set(bystander, 1)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", f"--rootdir={SHARED_LIB_DIR}", str(inner)],
            cwd=SHARED_LIB_DIR,
            env={**os.environ, "PREFIX_OUT": str(prefix_out)},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        prefix = prefix_out.read_text()
        assert prefix.startswith("test:")
        assert list(client.scan_iter(f"{prefix}*")) == []
        assert client.get(bystander) == b"1"
    finally:
        leftovers = (
            list(client.scan_iter(f"{prefix_out.read_text()}:*")) if prefix_out.exists() else []
        )
        client.delete(bystander, *leftovers)  # a failing fixture must not leak its keys


def test_make_token_and_signed_in_client_can_say_staff(make_token, signed_in_client):
    client = signed_in_client(staff=True)

    assert verify_session_token(make_token(staff=True)).staff is True
    assert verify_session_token(make_token()).staff is False
    assert verify_session_token(client.cookies[SESSION_COOKIE].value).staff is True
