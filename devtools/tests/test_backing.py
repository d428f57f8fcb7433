from pathlib import Path

import pytest

from ticketing_devtools import backing
from ticketing_devtools.backing import (
    admin_url,
    endpoints,
    ensure_backing_servers,
    install_command,
    pg_password_file,
    rabbitmqctl,
    stop_backing_servers,
)
from ticketing_devtools.provision import database_url


@pytest.fixture
def backing_dir(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("BACKING_DIR", str(tmp_path / "backing"))
    return tmp_path / "backing"


def test_servers_that_answer_are_used_as_they_are(backing_dir, capsys):
    ensure_backing_servers()  # this machine's PostgreSQL, RabbitMQ and Redis answer

    assert not backing_dir.exists()
    assert capsys.readouterr().out == ""
    assert stop_backing_servers() == []


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


def test_a_postgresql_that_refuses_the_admin_login_is_one_clear_line(monkeypatch):
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


def test_rabbitmqctl_reaches_the_machines_node_by_default(monkeypatch):
    monkeypatch.delenv("RABBITMQCTL", raising=False)

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


def test_this_machine_is_debian():
    assert backing._os_family() == "debian"
