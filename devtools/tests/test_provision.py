"""Database per service: each role owns its database and cannot open another's."""

import secrets
import uuid
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from ticketing_devtools.backing import admin_url
from ticketing_devtools.provision import database_url, drop_database, ensure_database


@pytest.fixture
def two_services():
    suffix = uuid.uuid4().hex[:8]
    made = []
    for name in ("alpha", "beta"):
        database = f"ticketing_provtest_{name}_{suffix}"
        password = secrets.token_urlsafe(16)
        ensure_database(admin_url(), database=database, role=database, password=password)
        made.append((database, password))
    yield made
    with psycopg.connect(admin_url(), autocommit=True) as conn:
        for database, _ in made:
            drop_database(admin_url(), database=database)
            conn.execute(f'DROP ROLE IF EXISTS "{database}"')


def test_a_service_role_connects_to_its_own_database_and_owns_it(two_services):
    (alpha, password), _ = two_services

    with psycopg.connect(database_url(database=alpha, role=alpha, password=password)) as conn:
        owner = conn.execute(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()"
        ).fetchone()[0]
        conn.execute("CREATE TABLE things (id int)")  # owner may create its schema

    assert owner == alpha


def test_a_service_role_cannot_connect_to_another_services_database(two_services):
    (alpha, alpha_password), (beta, _) = two_services

    with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
        psycopg.connect(database_url(database=beta, role=alpha, password=alpha_password))


def test_provisioning_twice_changes_nothing_but_the_password(two_services):
    (alpha, _), _ = two_services
    new_password = secrets.token_urlsafe(16)

    ensure_database(admin_url(), database=alpha, role=alpha, password=new_password)

    with psycopg.connect(database_url(database=alpha, role=alpha, password=new_password)) as conn:
        assert conn.execute("SELECT current_user").fetchone()[0] == alpha


def test_provisioning_the_same_service_at_once_from_several_runs_is_safe():
    # Two runs (a checkout and a fresh clone) set the same role and grants up together.
    database = f"ticketing_provtest_race_{uuid.uuid4().hex[:8]}"
    password = secrets.token_urlsafe(16)
    try:
        with ThreadPoolExecutor(6) as pool:
            list(
                pool.map(
                    lambda _: ensure_database(
                        admin_url(), database=database, role=database, password=password
                    ),
                    range(12),
                )
            )
        with psycopg.connect(database_url(database=database, role=database, password=password)):
            pass
    finally:
        drop_database(admin_url(), database=database)
        with psycopg.connect(admin_url(), autocommit=True) as conn:
            conn.execute(f'DROP ROLE IF EXISTS "{database}"')
