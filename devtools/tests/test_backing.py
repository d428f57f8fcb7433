import os
from pathlib import Path

import pytest

from ticketing_devtools import backing
from ticketing_devtools.backing import (
    DEFAULT_ADMIN_URL,
    DEFAULT_RABBITMQ_URL,
    DEFAULT_REDIS_URL,
    admin_url,
    endpoints,
    ensure_backing_servers,
    in_database,
    install_command,
    is_listening,
    pg_password_file,
    rabbitmqctl,
    stop_backing_servers,
)
from ticketing_devtools.devkeys import ensure_dev_secrets
from ticketing_devtools.environment import common_env
from ticketing_devtools.provision import database_url
from ticketing_devtools.status import environment_description


@pytest.fixture
def backing_dir(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("BACKING_DIR", str(tmp_path / "backing"))
    return tmp_path / "backing"


@pytest.fixture
def machine_servers() -> None:
    """These tests use the servers already answering; they never start any."""
    down = [e.label for e in endpoints() if not is_listening(e.host, e.port)]
    if down:
        pytest.skip(f"needs {', '.join(down)} answering at the configured URLs")


def test_servers_that_answer_are_used_as_they_are(backing_dir, machine_servers, capsys):
    ensure_backing_servers()

    assert not backing_dir.exists()
    assert capsys.readouterr().out == ""
    assert stop_backing_servers() == ([], [])


def test_every_host_port_and_user_comes_from_the_urls(monkeypatch):
    monkeypatch.setenv("PG_ADMIN_URL", "postgresql://admin:pw@10.1.2.3:6543/postgres")
    monkeypatch.setenv("RABBITMQ_URL", "amqp://bus:pw@10.1.2.4:5673/v")
    monkeypatch.setenv("REDIS_URL", "redis://:pw@10.1.2.5:6390/0")

    assert [(e.kind, e.host, e.port, e.user) for e in endpoints()] == [
        ("postgresql", "10.1.2.3", 6543, "admin"),
        ("rabbitmq", "10.1.2.4", 5673, "bus"),
        ("redis", "10.1.2.5", 6390, None),
    ]
    assert database_url(database="tickets", role="tickets", password="p@ss") == (
        "postgresql://tickets:p%40ss@10.1.2.3:6543/tickets"
    )


def test_a_services_database_url_keeps_the_admin_urls_connection_options(monkeypatch):
    monkeypatch.setenv(
        "PG_ADMIN_URL", "postgresql://admin:pw@db.example:5432/postgres?sslmode=require"
    )

    assert database_url(database="orders", role="orders", password="pw") == (
        "postgresql://orders:pw@db.example:5432/orders?sslmode=require"
    )


def test_without_urls_the_defaults_are_the_usual_local_ports(monkeypatch):
    for name in ("PG_ADMIN_URL", "RABBITMQ_URL", "REDIS_URL"):
        monkeypatch.delenv(name, raising=False)

    assert [(e.host, e.port) for e in endpoints()] == [
        ("127.0.0.1", 5432),
        ("127.0.0.1", 5672),
        ("127.0.0.1", 6379),
    ]


def test_a_server_started_here_lends_its_password_to_an_admin_url_without_one(
    backing_dir, monkeypatch
):
    monkeypatch.setenv("PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:6543/postgres")
    assert admin_url() == "postgresql://postgres@127.0.0.1:6543/postgres"

    pg_password_file(6543).parent.mkdir(parents=True)
    pg_password_file(6543).write_text("s3/cret\n")

    assert admin_url() == "postgresql://postgres:s3%2Fcret@127.0.0.1:6543/postgres"
    monkeypatch.setenv("PG_ADMIN_URL", "postgresql://postgres:given@127.0.0.1:6543/postgres")
    assert admin_url() == "postgresql://postgres:given@127.0.0.1:6543/postgres"


def test_an_admin_url_for_another_database_keeps_the_server_login_and_query(
    backing_dir, monkeypatch
):
    monkeypatch.setenv(
        "PG_ADMIN_URL", "postgresql://admin:p%2Fw@db.example:6543/postgres?sslmode=require"
    )

    assert admin_url("ticketing_orders") == (
        "postgresql://admin:p%2Fw@db.example:6543/ticketing_orders?sslmode=require"
    )
    assert in_database("postgresql://a@[::1]:5432/postgres?sslmode=verify-full", "x") == (
        "postgresql://a@[::1]:5432/x?sslmode=verify-full"
    )


def test_an_empty_url_counts_as_unset_for_every_reader(tmp_path, monkeypatch):
    for name in ("PG_ADMIN_URL", "RABBITMQ_URL", "REDIS_URL", "TICKETING_DB_PREFIX"):
        monkeypatch.setenv(name, "")

    env = common_env(ensure_dev_secrets(tmp_path / "dev"))

    assert [e.url for e in endpoints()] == [
        DEFAULT_ADMIN_URL,
        DEFAULT_RABBITMQ_URL,
        DEFAULT_REDIS_URL,
    ]
    assert (env["RABBITMQ_URL"], env["REDIS_URL"]) == (DEFAULT_RABBITMQ_URL, DEFAULT_REDIS_URL)
    assert environment_description() == {
        "rabbitmq_url": DEFAULT_RABBITMQ_URL,
        "db_prefix": "ticketing",
        "services": {},
    }


def test_a_postgresql_that_refuses_the_admin_login_is_one_clear_line(
    backing_dir, machine_servers, monkeypatch
):
    # The machine's server answers, but knows no such role.
    monkeypatch.setenv("PG_ADMIN_URL", "postgresql://no_such_admin:x@127.0.0.1:5432/postgres")

    with pytest.raises(SystemExit) as raised:
        ensure_backing_servers()

    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(
        "PostgreSQL at 127.0.0.1:5432 refused PG_ADMIN_URL's login as no_such_admin ("
    )
    assert 'role "no_such_admin" does not exist' in message
    assert "Set PG_ADMIN_URL to a superuser that can log in there" in message


def test_rabbitmqctl_runs_the_command_rabbitmqctl_names(monkeypatch):
    monkeypatch.setenv("RABBITMQCTL", "echo node-in-a-container")

    assert rabbitmqctl("add_vhost", "v 1") == "node-in-a-container -q add_vhost v 1\n"


def test_rabbitmqctl_reaches_the_machines_node_by_default(machine_servers, monkeypatch):
    if os.environ.get("RABBITMQCTL"):
        pytest.skip("RABBITMQCTL names the broker's own rabbitmqctl")

    assert "/" in rabbitmqctl("list_vhosts", "--no-table-headers").split()


def test_a_missing_server_package_names_the_command_that_installs_it(monkeypatch):
    monkeypatch.setitem(backing._FINDERS, "rabbitmq", lambda: None)
    monkeypatch.setattr(backing, "_can_apt", lambda: False)

    with pytest.raises(SystemExit) as raised:
        backing._ensure_installed(["postgresql", "rabbitmq"])

    assert str(raised.value) == (
        "Nothing answers at the configured URL of rabbitmq, and its server is not installed: "
        "install it with `sudo apt-get install -y rabbitmq-server` (or point the URL at a "
        "running one)"
    )


@pytest.mark.parametrize(
    ("family", "command"),
    [
        ("debian", "sudo apt-get install -y postgresql redis-server"),
        ("fedora", "sudo dnf install -y postgresql-server redis"),
        ("macos", "brew install postgresql@15 redis"),
    ],
)
def test_the_install_command_fits_the_operating_system(monkeypatch, family, command):
    monkeypatch.setattr(backing, "_os_family", lambda: family)

    assert install_command(["postgresql", "redis"]) == command


@pytest.mark.parametrize(
    ("release", "family"),
    [
        ('ID=debian\nVERSION_ID="12"\n', "debian"),
        ("ID=ubuntu\nID_LIKE=debian\n", "debian"),
        ("ID=fedora\nVERSION_ID=41\n", "fedora"),
        ('ID="rocky"\nID_LIKE="rhel centos fedora"\n', "fedora"),
        ("ID=alpine\n", "unknown"),
    ],
)
def test_the_operating_system_is_read_from_os_release(tmp_path, release, family):
    (tmp_path / "os-release").write_text(release)

    assert backing._os_family(tmp_path / "os-release") == family


def test_a_failing_rabbitmqctl_says_why_without_its_arguments(monkeypatch):
    # Fails as rabbitmqctl does when it refuses; the password must not be in the error.
    monkeypatch.setenv("RABBITMQCTL", "sh -c 'echo Error: user exists >&2; exit 69' --")

    with pytest.raises(RuntimeError) as raised:
        rabbitmqctl("change_password", "svc", stdin="hunter2-secret")

    assert str(raised.value) == "rabbitmqctl change_password: Error: user exists"


def test_a_password_goes_to_rabbitmqctl_on_stdin(monkeypatch):
    monkeypatch.setenv("RABBITMQCTL", "sh -c 'echo \"$@\"; cat' --")

    assert rabbitmqctl("add_user", "svc", stdin="hunter2") == "-q add_user svc\nhunter2"


def test_servers_are_started_on_loopback_only(backing_dir, monkeypatch):
    monkeypatch.setenv("REDIS_URL", "redis://10.255.255.1:6390/0")

    with pytest.raises(SystemExit) as raised:
        backing._start([endpoints()[2]])

    assert str(raised.value) == (
        "Nothing answers for Redis at 10.255.255.1:6390; make starts servers of its own on "
        "this machine's loopback addresses only: start it there, or point the URL at "
        "127.0.0.1"
    )
    assert not backing_dir.exists()


def test_ipv6_hosts_stay_in_brackets(backing_dir, monkeypatch):
    monkeypatch.setenv("PG_ADMIN_URL", "postgresql://postgres@[::1]:6543/postgres")
    pg_password_file(6543).parent.mkdir(parents=True)
    pg_password_file(6543).write_text("pw")

    assert admin_url() == "postgresql://postgres:pw@[::1]:6543/postgres"
    assert database_url(database="d", role="r", password="p") == "postgresql://r:p@[::1]:6543/d"


def test_a_local_password_is_never_sent_to_another_host(backing_dir, monkeypatch):
    monkeypatch.setenv("PG_ADMIN_URL", "postgresql://postgres@db.example:5432/postgres")
    pg_password_file(5432).parent.mkdir(parents=True)
    pg_password_file(5432).write_text("local-only")

    assert admin_url() == "postgresql://postgres@db.example:5432/postgres"


def test_down_leaves_alone_a_process_that_took_a_stale_pid(backing_dir):
    # A crash left pid files behind; the pids now belong to other processes (here: this
    # test's own process), which down must neither signal nor report as stopped.
    redis_dir = backing_dir / "redis-6390"
    redis_dir.mkdir(parents=True)
    (redis_dir / "redis.pid").write_text(f"{os.getpid()}\n")
    pg_data = backing_dir / "postgresql-6543" / "data"
    pg_data.mkdir(parents=True)
    (pg_data / "postmaster.pid").write_text(f"{os.getpid()}\n{pg_data}\n")

    assert stop_backing_servers() == ([], [])
    assert not (redis_dir / "redis.pid").exists()
    assert not (pg_data / "postmaster.pid").exists()


def test_secrets_are_created_private_and_never_through_a_link(tmp_path):
    backing._write_secret(tmp_path / "secret", "s3cret")

    assert (tmp_path / "secret").read_text() == "s3cret"
    assert (tmp_path / "secret").stat().st_mode & 0o777 == 0o600
    (tmp_path / "link").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(FileExistsError):
        backing._write_secret(tmp_path / "link", "s3cret")
    assert not (tmp_path / "elsewhere").exists()
