"""A password hasher that counts the checks it makes, to prove a refused sign-in made none."""

from django.contrib.auth.hashers import Argon2PasswordHasher

checks: list[str] = []


class CountingArgon2PasswordHasher(Argon2PasswordHasher):
    # Same algorithm name: it verifies the hashes the real hasher made, and is found for them.
    def verify(self, password: str, encoded: str) -> bool:
        checks.append(encoded)
        return super().verify(password, encoded)
