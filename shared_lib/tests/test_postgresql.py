"""shared_lib.postgresql: no health-check query per request; a connection the server
dropped between two units of work is replaced by the statement that finds it."""

import psycopg
import pytest
from django.conf import settings
from django.db import (
    OperationalError,
    ProgrammingError,
    close_old_connections,
    connection,
    transaction,
)

from shared_lib.testing.waiting import wait_for
from tests.demo.models import Visit

pytestmark = pytest.mark.usefixtures("transactional_db")


def _backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def _drop(pid: int) -> None:
    """The server ends that connection, as a restart, a failover or an idle timeout does."""
    with psycopg.connect(**connection.get_connection_params(), autocommit=True) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [pid])
        wait_for(
            lambda: (
                not other.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone()
            )
        )


def test_every_service_connects_without_a_per_request_health_check():
    database = settings.DATABASES["default"]

    assert database["ENGINE"] == "shared_lib.postgresql"
    assert database["CONN_HEALTH_CHECKS"] is False
    assert database["CONN_MAX_AGE"] == 60  # kept between requests, so the check matters


def test_a_connection_dropped_between_two_requests_is_replaced_by_the_next_write():
    dropped = _backend_pid()
    _drop(dropped)
    close_old_connections()  # one request ends, the next begins: the connection is kept

    with transaction.atomic():
        Visit.objects.create(view="after the restart")
        replacement = _backend_pid()

    assert replacement != dropped
    assert list(Visit.objects.values_list("view", flat=True)) == ["after the restart"]


def test_a_connection_dropped_between_two_requests_is_replaced_by_the_next_read():
    Visit.objects.create(view="before")
    dropped = _backend_pid()
    _drop(dropped)
    close_old_connections()

    assert list(Visit.objects.values_list("view", flat=True)) == ["before"]
    assert _backend_pid() != dropped


def test_a_write_outside_a_transaction_is_not_repeated_on_a_new_connection():
    # In autocommit the INSERT may have committed before its connection died: running it
    # again could write it twice, so the request fails instead, and the next reconnects.
    dropped = _backend_pid()
    _drop(dropped)
    close_old_connections()

    with pytest.raises(OperationalError):
        Visit.objects.create(view="not written twice")

    close_old_connections()
    assert Visit.objects.count() == 0
    assert _backend_pid() != dropped


def test_a_connection_dropped_within_a_request_fails_it_and_the_next_request_reconnects():
    proven = _backend_pid()  # this request's first statement succeeded on it
    _drop(proven)

    with pytest.raises(OperationalError), transaction.atomic():
        Visit.objects.create(view="lost with its connection")

    close_old_connections()  # the failed request ends: its broken connection goes
    assert Visit.objects.count() == 0
    assert _backend_pid() != proven


def test_a_failing_first_statement_on_a_live_connection_is_not_run_again():
    live = _backend_pid()
    close_old_connections()

    with pytest.raises(ProgrammingError, match="no_such_table"), connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM no_such_table")

    close_old_connections()
    assert _backend_pid() == live


def test_a_database_unreachable_on_reconnect_is_djangos_database_error(monkeypatch):
    # What the error handler turns into a 503: psycopg's own error would be a 500.
    dropped = _backend_pid()
    _drop(dropped)
    close_old_connections()
    monkeypatch.setitem(connection.settings_dict, "PORT", "1")  # nothing listens there

    with pytest.raises(OperationalError) as caught:
        Visit.objects.count()

    assert type(caught.value) is OperationalError  # django.db's, not psycopg's
    monkeypatch.undo()
    close_old_connections()
    assert Visit.objects.count() == 0


def test_a_retried_executemany_of_a_generator_writes_every_row_once():
    # In a transaction the try on the dead connection fails at its BEGIN, before the
    # generator is consumed: the retry has every row to write.
    dropped = _backend_pid()
    _drop(dropped)
    close_old_connections()
    table = Visit._meta.db_table

    with transaction.atomic(), connection.cursor() as cursor:
        cursor.executemany(
            f"INSERT INTO {table} (view) VALUES (%s)",  # noqa: S608 (the model's own table)
            ([f"row {i}"] for i in range(3)),
        )

    assert _backend_pid() != dropped
    assert sorted(Visit.objects.values_list("view", flat=True)) == ["row 0", "row 1", "row 2"]
