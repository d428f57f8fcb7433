"""docker-compose.yml's secrets: made on the first `docker compose up`, kept in a volume.

    python make_secrets.py /secrets     # the compose service `secrets` runs this

Nothing secret is committed for compose either. This writes each secret once (a file
that exists is left alone, so a restart keeps passwords that databases were initialised
with) into one directory per consumer, and every container mounts only its own
directories (volume subpaths) and reads them through NAME_FILE (shared_lib.conf):

    <service>/secret_key, <service>/database_url     Django's key, the database URL
    <service>-db/password                            the PostgreSQL role's password
    jwt-private/private.pem                          auth only: signs sessions
    jwt-public/public.pem                            every API: verifies them
    <service>/rabbitmq_url                           services on the bus: its own broker user
    rabbitmq/definitions.json                        the broker: vhost, users, permissions

`docker compose down --volumes` deletes them with the data they protect.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import sys
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

# The image's shared_lib: who is on the bus (each connects as its own user, allowed to
# publish only its own subjects) and the broker definitions that say so.
from shared_lib.events.broker import BUS_SERVICES, definitions

DATABASE_SERVICES = ("auth", "tickets", "orders", "payments")
# Every process with a Django SECRET_KEY: the APIs and the web client.
SECRET_KEY_SERVICES = (*DATABASE_SERVICES, "client")
# Long enough for their purpose (Django asks for at least 50 characters); URL-safe, so
# a password can sit in a database URL unescaped.
SECRET_KEY_BYTES = 50
PASSWORD_BYTES = 24
BROKER_VHOST = "ticketing"
# Read-only for everyone: each container sees only its own directories anyway, and the
# consumers run as different users (the services' 10001, PostgreSQL's 999).
FILE_MODE = 0o444


def _write_once(path: Path, make: str) -> str:
    if path.exists():
        return path.read_text()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(make)
    path.chmod(FILE_MODE)
    return make


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and path.read_text() == text:
        return
    path.unlink(missing_ok=True)
    path.write_text(text)
    path.chmod(FILE_MODE)


def rabbitmq_password_hash(password: str) -> str:
    """RabbitMQ's rabbit_password_hashing_sha256: base64(salt + sha256(salt + password)).
    The salt comes from the password, so the file is rewritten only when something changed."""
    salt = hashlib.sha256(b"salt:" + password.encode()).digest()[:4]
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


def make_secrets(root: Path) -> None:
    for service in SECRET_KEY_SERVICES:
        _write_once(root / service / "secret_key", secrets.token_urlsafe(SECRET_KEY_BYTES))
    for service in DATABASE_SERVICES:
        password = _write_once(
            root / f"{service}-db" / "password", secrets.token_urlsafe(PASSWORD_BYTES)
        )
        # Derived, so always rewritten from the kept password: role and database are
        # named after the service, the host is its database's compose service.
        _write(
            root / service / "database_url",
            f"postgresql://{service}:{password}@{service}-db:5432/{service}",
        )
    passwords = {}
    for service in BUS_SERVICES:
        passwords[service] = _write_once(
            root / "rabbitmq-users" / service, secrets.token_urlsafe(PASSWORD_BYTES)
        )
        _write(
            root / service / "rabbitmq_url",
            f"amqp://{service}:{passwords[service]}@rabbitmq:5672/{BROKER_VHOST}",
        )
    hashes = {service: rabbitmq_password_hash(pw) for service, pw in passwords.items()}
    definitions_json = definitions(vhost=BROKER_VHOST, password_hashes=hashes)
    definitions_text = json.dumps(definitions_json, indent=2) + "\n"
    _write(root / "rabbitmq" / "definitions.json", definitions_text)
    private_path = root / "jwt-private" / "private.pem"
    if private_path.exists():
        key = serialization.load_pem_private_key(private_path.read_bytes(), password=None)
    else:
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        _write_once(private_path, pem.decode())
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    _write(root / "jwt-public" / "public.pem", public_pem.decode())


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: make_secrets.py DIRECTORY")
    make_secrets(Path(sys.argv[1]))
