"""The scripts the images and compose run: migrations under an advisory lock, against the
real PostgreSQL, and compose's secret generator."""

import os
import secrets
import subprocess
import sys
import time
import uuid
from urllib.parse import urlsplit

import psycopg
import pytest
from cryptography.hazmat.primitives import serialization

from tests.deploy import SECRET_PLACEHOLDERS, load_script
from ticketing_devtools.backing import admin_url
from ticketing_devtools.catalog import DATABASE_SERVICES, REPO_ROOT, service
from ticketing_devtools.devkeys import ensure_dev_secrets
from ticketing_devtools.environment import service_env
from ticketing_devtools.provision import database_url, drop_database, ensure_database

MIGRATE_SCRIPT = REPO_ROOT / "deploy" / "migrate_locked.py"
migrate_locked = load_script(MIGRATE_SCRIPT)
make_secrets = load_script(REPO_ROOT / "deploy" / "compose" / "make_secrets.py")

# A service whose migrations include shared_lib's outbox and inbox as well as its own.
TARGET = service("tickets")
# How long a blocked migrator is watched to show it waits rather than proceeds.
BLOCKED_SECONDS = 3


@pytest.fixture
def database():
    name = f"ticketing_migrate_test_{uuid.uuid4().hex[:8]}"
    password = secrets.token_urlsafe(16)
    ensure_database(admin_url(), database=name, role=name, password=password)
    yield database_url(database=name, role=name, password=password)
    drop_database(admin_url(), database=name)
    with psycopg.connect(admin_url(), autocommit=True) as conn:
        conn.execute(f'DROP ROLE IF EXISTS "{name}"')


def migrate_env(url: str) -> dict[str, str]:
    """What the migrate job's container has, on the database `url`."""
    return {
        "PATH": os.environ["PATH"],
        "DJANGO_SETTINGS_MODULE": f"{TARGET.project}.settings",
        "SECRET_KEY": "migrate-test",
        "DATABASE_URL": url,
        "JWT_PUBLIC_KEY": "unused",
        "RABBITMQ_URL": SECRET_PLACEHOLDERS["RABBITMQ_URL"],
        "LOG_FORMAT": "text",
    }


def start_migrate(url: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(MIGRATE_SCRIPT)],
        cwd=TARGET.directory,
        env=migrate_env(url),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.mark.parametrize("target", DATABASE_SERVICES, ids=lambda s: s.name)
def test_every_model_change_has_its_migration(target):
    # A model changed without a migration would differ between a database built by the
    # migrations (every deployment) and the code that reads it.
    env = service_env(target, ensure_dev_secrets())  # as `make setup` migrates it
    check = subprocess.run(
        [sys.executable, "manage.py", "makemigrations", "--check", "--dry-run"],
        cwd=target.directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert check.returncode == 0, check.stdout + check.stderr
    assert "No changes detected" in check.stdout


def migrated(url: str) -> None:
    """Run the migrator to the end; it succeeded."""
    migrator = start_migrate(url)
    output = migrator.communicate(timeout=180)[0]
    assert migrator.returncode == 0, output


def applied(url: str) -> list[tuple[str, str]]:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT app, name FROM django_migrations ORDER BY id").fetchall()


def test_migrators_started_together_all_succeed_and_apply_each_migration_once(database):
    first, second = start_migrate(database), start_migrate(database)
    outputs = [p.communicate(timeout=180)[0] for p in (first, second)]

    assert [first.returncode, second.returncode] == [0, 0], outputs
    rows = applied(database)
    assert ("tickets", "0001_initial") in rows
    assert len(rows) == len(set(rows))
    # One of them did the work; the other, once it had the lock, found nothing to do.
    assert sum("No migrations to apply" in out for out in outputs) == 1, outputs


def test_a_migrator_waits_while_another_holds_the_lock(database):
    with psycopg.connect(database, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", [migrate_locked.LOCK_KEY])
        waiting = start_migrate(database)
        time.sleep(BLOCKED_SECONDS)

        assert waiting.poll() is None, waiting.communicate()[0]
        exists = holder.execute("SELECT to_regclass('django_migrations')").fetchone()[0]
        assert exists is None  # nothing migrated behind the holder's back

        holder.execute("SELECT pg_advisory_unlock(%s)", [migrate_locked.LOCK_KEY])
        output = waiting.communicate(timeout=180)[0]

    assert waiting.returncode == 0, output
    assert ("tickets", "0001_initial") in applied(database)


def undo_title_words_query(conn):
    """Migration 0007 undone, for a test that rewinds to an earlier one."""
    conn.execute(
        "DELETE FROM django_migrations WHERE app = 'tickets' AND name = '0007_title_words_query'"
    )
    conn.execute("DROP FUNCTION tickets_title_words_query(text)")


def test_a_search_index_build_that_died_half_way_is_rebuilt_on_the_next_try(database):
    # A concurrent build killed mid-way leaves an invalid index of its name and no record
    # of its migration: the next migrator must not fail on "already exists" for ever.
    migrated(database)
    as_admin = admin_url(database=urlsplit(database).path.lstrip("/"))
    with psycopg.connect(database, autocommit=True) as conn, psycopg.connect(as_admin) as admin:
        # As it was when 0003 was the newest: the later migrations undone.
        undo_title_words_query(conn)
        conn.execute("DELETE FROM django_migrations WHERE app = 'tickets' AND name > '0003'")
        conn.execute("DROP INDEX tickets_seller_idx, tickets_order_idx")
        conn.execute(
            "ALTER TABLE tickets_ticket DROP COLUMN sold_at, DROP COLUMN withdrawn_at,"
            " DROP COLUMN user_email"
        )
        conn.execute("CREATE INDEX tickets_ticket_user_id_6f5f1c69 ON tickets_ticket (user_id)")
        conn.execute("DROP INDEX tickets_available_search_idx")
        # What a build cancelled part-way leaves: the index exists, marked invalid.
        conn.execute("CREATE INDEX tickets_available_search_idx ON tickets_ticket (title)")
        admin.execute(
            "UPDATE pg_index SET indisvalid = false"
            " WHERE indexrelid = 'tickets_available_search_idx'::regclass"
        )
        admin.commit()

        migrated(database)
        valid, method = conn.execute(
            "SELECT i.indisvalid, a.amname FROM pg_index i JOIN pg_class c"
            " ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam"
            " WHERE c.relname = 'tickets_available_search_idx'"
        ).fetchone()
    assert (valid, method) == (True, "gin")
    assert ("tickets", "0003_title_search_index") in applied(database)


def index_state(conn, name):
    """(oid, valid) of the index `name`, or None."""
    return conn.execute(
        "SELECT c.oid, i.indisvalid FROM pg_class c JOIN pg_index i ON i.indexrelid = c.oid"
        " WHERE c.relname = %s",
        [name],
    ).fetchone()


def test_a_migration_of_several_concurrent_indexes_retried_keeps_what_was_built(database):
    # 0005 built the seller index, then died building the order index: the retry keeps the
    # first (no second build of a large index) and rebuilds the second.
    migrated(database)
    as_admin = admin_url(database=urlsplit(database).path.lstrip("/"))
    with psycopg.connect(database, autocommit=True) as conn, psycopg.connect(as_admin) as admin:
        # As if 0005 had died: neither it nor any later migration recorded.
        undo_title_words_query(conn)
        conn.execute("DELETE FROM django_migrations WHERE app = 'tickets' AND name >= '0005'")
        conn.execute("CREATE INDEX tickets_ticket_user_id_6f5f1c69 ON tickets_ticket (user_id)")
        seller_before = index_state(conn, "tickets_seller_idx")
        admin.execute(
            "UPDATE pg_index SET indisvalid = false"
            " WHERE indexrelid = 'tickets_order_idx'::regclass"
        )
        admin.commit()
        order_before = index_state(conn, "tickets_order_idx")

        migrated(database)
        assert index_state(conn, "tickets_seller_idx") == seller_before
        order_after = index_state(conn, "tickets_order_idx")
        assert order_after[1] is True
        assert order_after[0] != order_before[0]  # built again
        assert index_state(conn, "tickets_ticket_user_id_6f5f1c69") is None
    assert order_before[1] is False
    assert ("tickets", "0005_seller_and_order_indexes") in applied(database)


def test_a_search_index_change_held_up_by_a_reader_fails_with_the_lock_timeout(database):
    # 0006 changes the search index under a lock every query on the table conflicts with;
    # a transaction that has read the table holds it off. The migrator must give up after
    # its lock_timeout and say so (not an aborted transaction's error), leaving 0006 to
    # the next try.
    migrated(database)
    with psycopg.connect(database, autocommit=True) as conn:
        undo_title_words_query(conn)
        conn.execute(
            "DELETE FROM django_migrations WHERE app = 'tickets' AND name = %s",
            ["0006_search_index_without_pending_list"],
        )
        conn.execute("ALTER INDEX tickets_available_search_idx RESET (fastupdate)")
    with psycopg.connect(database) as reader:
        reader.execute("SELECT count(*) FROM tickets_ticket WHERE order_id IS NULL")
        migrator = start_migrate(database)
        output = migrator.communicate(timeout=60)[0]
        reader.rollback()

    assert migrator.returncode != 0
    assert "LockNotAvailable" in output or "lock timeout" in output, output
    assert "current transaction is aborted" not in output, output
    assert ("tickets", "0006_search_index_without_pending_list") not in applied(database)
    migrated(database)  # the reader gone, the next try applies it
    with psycopg.connect(database) as conn:
        options = conn.execute(
            "SELECT reloptions FROM pg_class WHERE relname = 'tickets_available_search_idx'"
        ).fetchone()[0]
    assert options == ["fastupdate=off"]


def test_compose_secrets_are_made_once_and_consistent(tmp_path):
    make_secrets.make_secrets(tmp_path)
    first = {p: p.read_text() for p in tmp_path.rglob("*") if p.is_file()}

    make_secrets.make_secrets(tmp_path)  # every later `docker compose up`

    assert {p: p.read_text() for p in tmp_path.rglob("*") if p.is_file()} == first
    for name in make_secrets.DATABASE_SERVICES:
        url = urlsplit((tmp_path / name / "database_url").read_text())
        assert url.password == (tmp_path / f"{name}-db" / "password").read_text()
        assert (url.username, url.hostname, url.path) == (name, f"{name}-db", f"/{name}")
    for name in make_secrets.SECRET_KEY_SERVICES:
        assert len((tmp_path / name / "secret_key").read_text()) >= 50
    private = serialization.load_pem_private_key(
        (tmp_path / "jwt-private" / "private.pem").read_bytes(), password=None
    )
    public = (tmp_path / "jwt-public" / "public.pem").read_bytes()
    assert (
        private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        == public
    )
    assert {oct(p.stat().st_mode & 0o777) for p in first} == {oct(make_secrets.FILE_MODE)}


def migrated_back(url: str, app: str, migration: str) -> None:
    """`manage.py migrate app migration` (a rollback of what came after); it succeeded."""
    back = subprocess.run(
        [sys.executable, "manage.py", "migrate", app, migration],
        cwd=TARGET.directory,
        env=migrate_env(url),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert back.returncode == 0, back.stdout + back.stderr


def invalid_index(conn, admin, name, definition):
    """What a concurrent build of `name` cancelled part-way leaves: the index, invalid."""
    conn.execute(f"CREATE INDEX {name} ON shared_lib_outgoingemail {definition}")
    admin.execute("UPDATE pg_index SET indisvalid = false WHERE indexrelid = %s::regclass", [name])
    admin.commit()
    return index_state(conn, name)


def test_the_email_index_swap_retried_either_way_keeps_what_was_built(database):
    # shared_lib 0005 built two of its three indexes and died: the third not built, the
    # old sent index still there. The retry keeps the two (no second build of a large
    # index), builds the third, drops the old one. A rollback that died rebuilding the
    # old index (left invalid) is retried just as well.
    migrated(database)
    as_admin = admin_url(database=urlsplit(database).path.lstrip("/"))
    with psycopg.connect(database, autocommit=True) as conn, psycopg.connect(as_admin) as admin:
        conn.execute("DELETE FROM django_migrations WHERE app = 'shared_lib' AND name >= '0005'")
        conn.execute("DROP INDEX email_given_up_idx")
        conn.execute("CREATE INDEX email_sent_idx ON shared_lib_outgoingemail (sent_at)")
        due, sent_at = index_state(conn, "email_due_idx"), index_state(conn, "email_sent_at_idx")
        pending = index_state(conn, "email_pending_idx")

        migrated(database)
        assert index_state(conn, "email_due_idx") == due
        assert index_state(conn, "email_sent_at_idx") == sent_at
        assert index_state(conn, "email_given_up_idx")[1] is True
        assert index_state(conn, "email_sent_idx") is None
        assert index_state(conn, "email_pending_idx") == pending  # the release before's
        assert ("shared_lib", "0005_email_indexes_without_given_up") in applied(database)

        # A rollback that died rebuilding the old sent index, retried.
        left = invalid_index(conn, admin, "email_sent_idx", "(sent_at)")
        migrated_back(database, "shared_lib", "0004")
        rebuilt = index_state(conn, "email_sent_idx")
        assert rebuilt[1] is True
        assert rebuilt[0] != left[0]
        definition = conn.execute("SELECT pg_get_indexdef('email_sent_idx'::regclass)").fetchone()
        assert definition[0].endswith("ON public.shared_lib_outgoingemail USING btree (sent_at)")
        assert index_state(conn, "email_pending_idx") == pending
        for name in ("email_due_idx", "email_sent_at_idx", "email_given_up_idx"):
            assert index_state(conn, name) is None
    assert ("shared_lib", "0005_email_indexes_without_given_up") not in applied(database)
