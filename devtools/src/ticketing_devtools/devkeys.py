"""Development secrets, generated once per checkout at set-up time (never committed).

from ticketing_devtools.devkeys import ensure_dev_secrets
secrets = ensure_dev_secrets()
secrets.jwt_private_key_file, secrets.django_secret("auth"), secrets.db_password("auth")
secrets.broker_password("tickets")   # tickets' RabbitMQ user
secrets.stripe_webhook_secret        # whsec_...: localstripe signs, payments_svc verifies
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets as pysecrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ticketing_devtools.catalog import DATABASE_SERVICES, DEV_DIR, SECRET_KEY_SERVICES


@dataclass(frozen=True)
class DevSecrets:
    directory: Path
    values: dict[str, str]

    @property
    def jwt_private_key_file(self) -> Path:
        return self.directory / "jwt_private.pem"

    @property
    def jwt_public_key_file(self) -> Path:
        return self.directory / "jwt_public.pem"

    def django_secret(self, service: str) -> str:
        return self.values[f"{service}.secret_key"]

    def db_password(self, service: str) -> str:
        return self.values[f"{service}.db_password"]

    def broker_password(self, user: str) -> str:
        """A RabbitMQ user's password, derived from one generated secret: any user a run
        provisions (a service, a test's stand-in) gets one, the same every time."""
        key = self.values["broker.secret"].encode()
        return hmac.new(key, user.encode(), hashlib.sha256).hexdigest()[:32]

    @property
    def stripe_webhook_secret(self) -> str:
        """The signing secret of the local stack's Stripe webhook: its localstripe signs
        every event with it, payments_svc verifies them (STRIPE_WEBHOOK_SECRET)."""
        return self.values["stripe.webhook_secret"]


def _write_private(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    path.chmod(0o600)


def ensure_dev_secrets(directory: Path = DEV_DIR) -> DevSecrets:
    """Create what is missing (keys, per-service secrets); keep what exists."""
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    private_file = directory / "jwt_private.pem"
    public_file = directory / "jwt_public.pem"
    if not private_file.exists() or not public_file.exists():
        key = Ed25519PrivateKey.generate()
        _write_private(
            private_file,
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        )
        public_file.write_bytes(
            key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
    values_file = directory / "secrets.json"
    values: dict[str, str] = json.loads(values_file.read_text()) if values_file.exists() else {}
    for service in SECRET_KEY_SERVICES:
        values.setdefault(f"{service.name}.secret_key", pysecrets.token_urlsafe(50))
    for service in DATABASE_SERVICES:
        values.setdefault(f"{service.name}.db_password", pysecrets.token_urlsafe(24))
    values.setdefault("broker.secret", pysecrets.token_urlsafe(32))
    # In Stripe's own form (whsec_, then letters and digits), as a real one looks.
    values.setdefault("stripe.webhook_secret", "whsec_" + pysecrets.token_hex(24))
    _write_private(values_file, json.dumps(values, indent=2, sort_keys=True).encode())
    return DevSecrets(directory=directory, values=values)
