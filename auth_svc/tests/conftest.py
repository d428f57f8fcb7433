import pytest


@pytest.fixture(autouse=True)
def _isolated(session_keys, redis_keys):
    """Every test signs with a fresh key pair and counts rate limits under its own prefix."""


@pytest.fixture
def signup(api_client):
    def post(email="buyer@example.com", password="correct horse battery", **extra):
        return api_client.post(
            "/api/users/signup", {"email": email, "password": password}, format="json", **extra
        )

    return post
