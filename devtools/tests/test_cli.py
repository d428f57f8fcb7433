"""`ticketing-dev`'s own errors: one clear line naming what is valid, never a traceback;
and the repository's .env, read at start without overriding what is exported."""

import http.server
import os
import threading

import pytest

from shared_lib.testing.processes import free_port
from ticketing_devtools import cli
from ticketing_devtools.catalog import VAR_DIR
from ticketing_devtools.cli import main
from ticketing_devtools.envfile import EnvFileError, load_env_file, parse_env_file
from ticketing_devtools.status import default_stack_file

SUITES = "shared_lib, auth, tickets, orders, payments, expiration, client, devtools"
SERVICES = "auth, tickets, orders, payments, expiration, client"
PROBE = "TICKETING_ENV_PROBE"


@pytest.fixture
def env_file(tmp_path, monkeypatch):
    """The .env ticketing-dev reads, in a temp dir; what loading it sets is undone after."""
    path = tmp_path / ".env"
    monkeypatch.setattr(cli, "ENV_FILE", path)
    for name in (PROBE, "GATEWAY_PORT", "QUOTED", "SINGLE", "EMPTY", "EXPORTED"):
        monkeypatch.delenv(name, raising=False)
    return path


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
    assert (
        last_line == f"ticketing-dev manage: error: unknown service order; the services: {SERVICES}"
    )


def test_help_lists_every_command_and_every_suite(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])

    assert exit_.value.code == 0
    help_text = " ".join(capsys.readouterr().out.split())
    for command in ("up", "setup", "demo", "test", "status", "manage"):
        assert f"{command} " in help_text
    assert f"run test suites: {SUITES}" in help_text
    assert f"manage.py of one service ({SERVICES})" in help_text


def test_nothing_answering_is_one_line_not_a_traceback(env_file, capsys):
    port = free_port()

    code = main(["demo", "--url", f"http://127.0.0.1:{port}"])

    assert code == 1
    assert capsys.readouterr().err.splitlines() == [
        f"ticketing-dev demo: error: nothing answers at http://127.0.0.1:{port}/api/users/signup:"
        " is the system running (make up)?"
    ]


def test_a_commands_own_refusal_is_one_line_in_the_same_form(env_file, capsys):
    class NotTheSystem(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.send_response(404)
            self.end_headers()
            self.wfile.write(b"no such page")

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), NotTheSystem)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}"
    try:
        code = main(["demo", "--url", url])
    finally:
        server.shutdown()

    assert code == 1
    assert capsys.readouterr().err.splitlines() == [
        f"ticketing-dev demo: error: Could not sign in alice@example.com at {url}: 404 no such page"
    ]


def test_an_unreadable_env_file_is_one_line_naming_the_line(env_file, capsys):
    env_file.write_text("GATEWAY_PORT=8081\nthis is not a setting\n")

    code = main(["demo"])

    assert code == 1
    assert capsys.readouterr().err.splitlines() == [
        f"ticketing-dev demo: error: {env_file}:2: not KEY=value: this is not a setting"
    ]


def test_the_env_file_format_is_env_examples(tmp_path):
    path = tmp_path / ".env"
    path.write_text(
        "# a comment\n"
        "\n"
        "PLAIN=value\n"
        "SPACED = two words   # a comment after the value\n"
        "HASHED=a#b\n"
        'export QUOTED="keeps # and spaces " # comment\n'
        "SINGLE='no \\n escapes'\n"
        'ESCAPED="line one\\nline \\"two\\""\n'
        "EMPTY=                    # left empty, as in .env.example: sets nothing\n"
    )

    assert parse_env_file(path) == {
        "PLAIN": "value",
        "SPACED": "two words",
        "HASHED": "a#b",
        "QUOTED": "keeps # and spaces ",
        "SINGLE": "no \\n escapes",
        "ESCAPED": 'line one\nline "two"',
    }


def test_env_example_itself_reads_as_an_env_file():
    values = parse_env_file(cli.REPO_ROOT / ".env.example")

    assert values["GATEWAY_PORT"] == "8080"
    assert values["RABBITMQ_URL"] == "amqp://guest:guest@127.0.0.1:5672//"
    assert "SECRET_KEY" not in values  # required, left empty there


@pytest.mark.parametrize("line", ['A="open', "A='x' trailing", "not a setting"])
def test_a_malformed_line_is_refused(tmp_path, line):
    path = tmp_path / ".env"
    path.write_text(line + "\n")

    with pytest.raises(EnvFileError, match=r"\.env:1: "):
        parse_env_file(path)


def test_exported_variables_win_over_the_env_file(env_file, monkeypatch):
    env_file.write_text(f"EXPORTED=from-file\n{PROBE}=from-file\n")
    monkeypatch.setenv("EXPORTED", "exported")

    loaded = load_env_file(env_file)

    assert loaded == {PROBE: "from-file"}
    assert os.environ["EXPORTED"] == "exported"
    assert os.environ[PROBE] == "from-file"


def test_a_missing_env_file_is_no_error(tmp_path):
    assert load_env_file(tmp_path / ".env") == {}


def test_the_commands_read_the_env_file_and_exported_values_win(env_file, monkeypatch, capsys):
    env_file.write_text(f"GATEWAY_PORT={free_port()}\n")
    # demo's default URL comes from GATEWAY_PORT: the error names the port it used.
    main(["demo"])
    from_file = capsys.readouterr().err

    exported = str(free_port())
    monkeypatch.setenv("GATEWAY_PORT", exported)
    main(["demo"])
    from_environment = capsys.readouterr().err

    port_in_file = env_file.read_text().strip().split("=")[1]
    assert f"http://127.0.0.1:{port_in_file}/" in from_file
    assert f"http://127.0.0.1:{exported}/" in from_environment


def test_every_process_started_sees_the_env_file(env_file, capfd):
    env_file.write_text(f'{PROBE}="seen by manage.py"\n')

    code = main(["manage", "auth", "shell", "-c", f"import os; print(os.environ['{PROBE}'])"])

    assert code == 0
    assert "seen by manage.py" in capfd.readouterr().out.splitlines()


def test_an_empty_gateway_port_or_db_prefix_counts_as_unset(monkeypatch):
    monkeypatch.setenv("GATEWAY_PORT", "")
    monkeypatch.setenv("TICKETING_DB_PREFIX", "")

    assert default_stack_file() == VAR_DIR / "run" / "ticketing-8080" / "stack.json"


def test_a_gateway_port_that_is_no_port_number_is_one_line(env_file, monkeypatch, capsys):
    monkeypatch.setenv("GATEWAY_PORT", "80a")

    assert main(["demo"]) == 1
    assert capsys.readouterr().err == (
        "ticketing-dev demo: error: GATEWAY_PORT must be a port number, not '80a'\n"
    )
