import pytest


@pytest.fixture(autouse=True)
def _isolated(session_keys, redis_keys):
    """Every test signs with a fresh key pair and counts rate limits under its own prefix."""
