from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from shared_lib.conf import MissingSetting, env, env_bool, env_int, env_list

NAME = "SHARED_LIB_TEST_VALUE"


@pytest.fixture(autouse=True)
def _unset(monkeypatch):
    monkeypatch.delenv(NAME, raising=False)
    monkeypatch.delenv(f"{NAME}_FILE", raising=False)


@pytest.mark.parametrize("read", [env, lambda name: env_int(name), lambda name: env_list(name)])
def test_a_required_variable_that_is_missing_raises_naming_it(read):
    with pytest.raises(MissingSetting) as excinfo:
        read(NAME)

    assert excinfo.value.name == NAME
    assert str(excinfo.value) == (
        f"Missing required environment variable {NAME} (or {NAME}_FILE); "
        "see .env.example for what it means."
    )
    assert isinstance(excinfo.value, ImproperlyConfigured)


def test_a_set_variable_is_returned_as_is(monkeypatch):
    monkeypatch.setenv(NAME, " value with spaces ")

    assert env(NAME) == " value with spaces "


def test_an_empty_variable_is_set_not_missing(monkeypatch):
    monkeypatch.setenv(NAME, "")

    assert env(NAME) == ""
    assert env(NAME, default="fallback") == ""


def test_the_default_is_used_only_when_the_variable_is_missing(monkeypatch):
    assert env(NAME, default="fallback") == "fallback"
    assert env(NAME, default=None) is None

    monkeypatch.setenv(NAME, "given")

    assert env(NAME, default="fallback") == "given"


def test_the_file_variant_is_read_without_its_trailing_newline(monkeypatch, tmp_path: Path):
    pem = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n-----END PUBLIC KEY-----"
    secret = tmp_path / "key.pem"
    secret.write_text(pem + "\n")
    monkeypatch.setenv(f"{NAME}_FILE", str(secret))

    assert env(NAME) == pem


def test_the_variable_itself_wins_over_its_file_variant(monkeypatch, tmp_path: Path):
    secret = tmp_path / "secret"
    secret.write_text("from-file")
    monkeypatch.setenv(f"{NAME}_FILE", str(secret))
    monkeypatch.setenv(NAME, "from-env")

    assert env(NAME) == "from-env"


def test_the_file_variant_feeds_the_typed_readers(monkeypatch, tmp_path: Path):
    secret = tmp_path / "value"
    monkeypatch.setenv(f"{NAME}_FILE", str(secret))

    secret.write_text("42\n")
    assert env_int(NAME) == 42
    secret.write_text("true\n")
    assert env_bool(NAME, default=False) is True
    secret.write_text("a, b\n")
    assert env_list(NAME) == ["a", "b"]


def test_an_unreadable_file_variant_raises_naming_it(monkeypatch, tmp_path: Path):
    missing = tmp_path / "nope"
    monkeypatch.setenv(f"{NAME}_FILE", str(missing))

    with pytest.raises(ImproperlyConfigured, match=rf"^{NAME}_FILE={missing} cannot be read: "):
        env(NAME)


def test_an_empty_file_variant_counts_as_missing(monkeypatch):
    monkeypatch.setenv(f"{NAME}_FILE", "")

    with pytest.raises(MissingSetting):
        env(NAME)
    assert env(NAME, default="fallback") == "fallback"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1", True),
        ("true", True),
        ("TRUE", True),
        (" yes ", True),
        ("on", True),
        ("0", False),
        ("false", False),
        ("False", False),
        ("no", False),
        ("off", False),
        ("", False),
    ],
)
def test_env_bool_parses(monkeypatch, raw, expected):
    monkeypatch.setenv(NAME, raw)

    assert env_bool(NAME, default=not expected) is expected


@pytest.mark.parametrize("default", [True, False])
def test_env_bool_default_when_missing(default):
    assert env_bool(NAME, default=default) is default


@pytest.mark.parametrize("raw", ["maybe", "2", "yes please", "t"])
def test_env_bool_refuses_other_values_naming_the_variable(monkeypatch, raw):
    monkeypatch.setenv(NAME, raw)

    with pytest.raises(ImproperlyConfigured) as excinfo:
        env_bool(NAME, default=False)
    assert str(excinfo.value) == f"{NAME} must be true or false, not {raw!r}"


@pytest.mark.parametrize(("raw", "expected"), [("900", 900), (" 60\n", 60), ("-5", -5), ("0", 0)])
def test_env_int_parses(monkeypatch, raw, expected):
    monkeypatch.setenv(NAME, raw)

    assert env_int(NAME) == expected


def test_env_int_default_when_missing():
    assert env_int(NAME, default=900) == 900


@pytest.mark.parametrize("raw", ["", "ten", "1.5", "9e2", "12 minutes"])
def test_env_int_refuses_non_integers_naming_the_variable(monkeypatch, raw):
    monkeypatch.setenv(NAME, raw)

    with pytest.raises(ImproperlyConfigured) as excinfo:
        env_int(NAME, default=1)
    assert str(excinfo.value) == f"{NAME} must be an integer, not {raw!r}"


def test_env_int_enforces_the_minimum(monkeypatch):
    monkeypatch.setenv(NAME, "59")

    with pytest.raises(ImproperlyConfigured) as excinfo:
        env_int(NAME, default=900, minimum=60)
    assert str(excinfo.value) == f"{NAME} must be at least 60, not 59"

    monkeypatch.setenv(NAME, "60")
    assert env_int(NAME, default=900, minimum=60) == 60


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("a,b,c", ["a", "b", "c"]),
        (" a , b ", ["a", "b"]),
        ("a,,b,", ["a", "b"]),
        ("single", ["single"]),
        ("", []),
        (" , ,", []),
    ],
)
def test_env_list_splits_on_commas_and_drops_blanks(monkeypatch, raw, expected):
    monkeypatch.setenv(NAME, raw)

    assert env_list(NAME, default=["unused"]) == expected


def test_env_list_default_is_a_copy():
    default = ["localhost"]

    value = env_list(NAME, default=default)
    value.append("mutated")

    assert default == ["localhost"]
