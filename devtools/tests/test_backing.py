import socket

import pytest

from ticketing_devtools.backing import (
    BACKING_SERVERS,
    BackingServer,
    require_backing_servers,
)


def test_the_machines_servers_are_up():
    require_backing_servers()  # PostgreSQL, RabbitMQ and Redis answer: no exit


def test_a_missing_server_is_named_with_the_command_that_starts_it():
    with socket.socket() as sock:  # bound, never listening: connections are refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        missing = BackingServer("RabbitMQ", "127.0.0.1", port, "rabbitmq-server -detached")

        with pytest.raises(SystemExit) as raised:
            require_backing_servers((*BACKING_SERVERS, missing))

    assert str(raised.value) == (
        "Backing server(s) missing:\n"
        f"  RabbitMQ is not answering on 127.0.0.1:{port}; start it with:\n"
        "    rabbitmq-server -detached"
    )
