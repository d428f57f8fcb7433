"""`ticketing-dev`'s own errors: one clear line naming what is valid, never a traceback."""

import pytest

from ticketing_devtools.cli import main

SUITES = "shared_lib, auth, tickets, orders, payments, expiration, client, devtools"


def test_an_unknown_suite_is_one_line_naming_every_suite(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["test", "orders", "ordrs"])

    assert exit_.value.code == 2
    last_line = capsys.readouterr().err.splitlines()[-1]
    assert last_line == f"ticketing-dev test: error: unknown suite ordrs; the suites: {SUITES}"


def test_an_unknown_service_for_manage_is_one_line_naming_every_service(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["manage", "order", "migrate"])

    assert exit_.value.code == 2
    last_line = capsys.readouterr().err.splitlines()[-1]
    assert last_line == (
        "ticketing-dev manage: error: argument service: invalid choice: 'order' (choose from"
        " 'auth', 'tickets', 'orders', 'payments', 'expiration', 'client')"
    )


def test_help_lists_every_command_and_every_suite(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])

    assert exit_.value.code == 0
    help_text = " ".join(capsys.readouterr().out.split())
    for command in ("up", "setup", "demo", "test", "status", "manage"):
        assert f"{command} " in help_text
    assert f"run test suites: {SUITES}" in help_text
