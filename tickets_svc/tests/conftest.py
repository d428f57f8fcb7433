import pytest


@pytest.fixture(autouse=True)
def _isolated(session_keys, redis_keys):
    """Every test signs with a fresh key pair and counts rate limits under its own prefix."""


@pytest.fixture
def seller(signed_in_client):
    return signed_in_client(email="seller@example.com")


@pytest.fixture
def buyer(signed_in_client):
    return signed_in_client(email="buyer@example.com")
