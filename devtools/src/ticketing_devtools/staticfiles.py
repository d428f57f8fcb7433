"""collectstatic, run only when what it collects may have changed.

    collect_static(service.directory, env)          # before a web process starts

Collecting with the manifest storage hashes and compresses every file (the admin's, DRF's,
Swagger UI's: thousands), which costs tens of seconds of CPU per service; every stack
start and test suite would otherwise pay it again for an unchanged tree. The inputs are the
locked third-party packages, our own static folders and the settings, so a fingerprint
of those decides.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path
from typing import IO

from ticketing_devtools.catalog import REPO_ROOT

MARKER = ".ticketing-fingerprint"
SHARED_SOURCES = REPO_ROOT / "shared_lib" / "src" / "shared_lib"


def _collect_input(parts: tuple[str, ...]) -> bool:
    """A file collectstatic reads: a static folder's, or settings (a project's settings.py,
    shared_lib's settings package) that say what is collected and where."""
    if "static" in parts:
        return True
    *folders, name = parts
    return name.endswith(".py") and (name == "settings.py" or "settings" in folders)


def fingerprint(directory: Path) -> str:
    digest = hashlib.sha256(sys.version.encode())
    # Third-party static files change only when a locked package does.
    digest.update((REPO_ROOT / "uv.lock").read_bytes())
    for root in (directory, SHARED_SOURCES):
        for path in sorted(root.rglob("*")):
            parts = path.relative_to(root).parts
            if path.is_file() and "staticfiles" not in parts and _collect_input(parts):
                stat = path.stat()
                digest.update(f"{path}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


def collect_static(directory: Path, env: dict[str, str], *, output: IO[str] | None = None) -> bool:
    """Collect into the project's STATIC_ROOT (`<directory>/staticfiles`) unless it is
    current; returns whether it ran."""
    marker = directory / "staticfiles" / MARKER
    current = fingerprint(directory)
    if marker.exists() and marker.read_text() == current:
        return False
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"],
        cwd=directory,
        env=env,
        check=True,
        stdout=output,
        stderr=subprocess.STDOUT if output else None,
    )
    marker.write_text(current)
    return True
