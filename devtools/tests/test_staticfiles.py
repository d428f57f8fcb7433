"""collectstatic runs again exactly when one of its inputs changes."""

import os

import pytest

from ticketing_devtools import staticfiles


@pytest.fixture
def trees(tmp_path, monkeypatch):
    """A service's project folder and a shared_lib source tree, each with what matters."""
    project = tmp_path / "tickets_svc"
    shared = tmp_path / "shared_lib"
    for path in (
        project / "tickets_svc" / "settings.py",
        project / "tickets" / "services.py",
        project / "tickets" / "static" / "tickets" / "app.css",
        shared / "settings" / "base.py",
        shared / "settings" / "__pycache__" / "base.cpython-311.pyc",
        shared / "events" / "relay.py",
        shared / "static" / "shared_lib" / "admin.css",
    ):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("one\n")
    monkeypatch.setattr(staticfiles, "SHARED_SOURCES", shared)
    return project, shared


def _touch(path):
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


@pytest.mark.parametrize(
    ("changed", "is_input"),
    [
        ("tickets_svc/tickets_svc/settings.py", True),
        ("tickets_svc/tickets/static/tickets/app.css", True),
        ("shared_lib/settings/base.py", True),
        ("shared_lib/static/shared_lib/admin.css", True),
        ("tickets_svc/tickets/services.py", False),
        ("shared_lib/events/relay.py", False),
        ("shared_lib/settings/__pycache__/base.cpython-311.pyc", False),
    ],
)
def test_only_a_changed_input_changes_the_fingerprint(trees, tmp_path, changed, is_input):
    project, _ = trees
    before = staticfiles.fingerprint(project)

    _touch(tmp_path / changed)

    assert (staticfiles.fingerprint(project) != before) is is_input
