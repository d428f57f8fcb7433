"""A virtualenv of its own for a peer that must not share the project's, built on first use.

    python = isolated_python("nameko", REPO_ROOT)   # var/bench/peer-nameko/bin/python

From bench/peers/<name>-requirements.txt (exact pins with hashes), with uv, under
var/bench/peer-<name>/; rebuilt when that file changes, reused otherwise. Installing needs
the package index, as `make sync` does; nothing of it is needed to run the system.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

PEERS_DIR = Path(__file__).resolve().parent


def _uv(repo_root: Path) -> str:
    # The Makefile's rule: uv on the PATH, else the one it installs under .tools/.
    found = shutil.which("uv") or str(repo_root / ".tools" / "bin" / "uv")
    if not Path(found).exists():
        raise RuntimeError(f"uv not found (looked on PATH and at {found}): run `make sync`")
    return found


def isolated_python(name: str, repo_root: Path) -> Path:
    """The interpreter of peer `name`'s virtualenv, built or rebuilt as needed."""
    requirements = PEERS_DIR / f"{name}-requirements.txt"
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()
    home = repo_root / "var" / "bench" / f"peer-{name}"
    python = home / "bin" / "python"
    stamp = home / "requirements.sha256"
    home.parent.mkdir(parents=True, exist_ok=True)
    # Two benches starting at once build it once; the second waits and reuses it.
    with (home.parent / f"peer-{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if python.exists() and stamp.exists() and stamp.read_text() == digest:
            return python
        shutil.rmtree(home, ignore_errors=True)
        uv = _uv(repo_root)
        env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
        # The same interpreter as the project's virtualenv: the figures compare frameworks,
        # not Python builds.
        base = getattr(sys, "_base_executable", sys.executable)
        for command in (
            [uv, "venv", "--quiet", "--python", base, str(home)],
            [
                uv,
                "pip",
                "install",
                "--quiet",
                "--require-hashes",
                "--python",
                str(python),
                "-r",
                str(requirements),
            ],
        ):
            subprocess.run(command, check=True, env=env, timeout=600)  # noqa: S603 (fixed)
        stamp.write_text(digest)
    return python
