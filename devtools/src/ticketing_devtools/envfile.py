"""The repository's `.env`: local settings every process `ticketing-dev` starts sees.

    load_env_file(REPO_ROOT / ".env")    # into os.environ; what is exported wins
    parse_env_file(Path(".env"))         # {"GATEWAY_PORT": "8081", ...}
    # Format of .env.example: KEY=value, `# comments`, optional quotes, `export KEY=value`.

A value left empty (`STRIPE_SECRET_KEY=`) sets nothing: in a copy of .env.example it
means "none given", and an empty variable would mask the local default.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$")


class EnvFileError(ValueError):
    pass


_QUOTED = {
    '"': re.compile(r'"((?:[^"\\]|\\.)*)"(.*)$'),
    "'": re.compile(r"'([^']*)'(.*)$"),
}
_ESCAPES = {"n": "\n", '"': '"', "\\": "\\"}


def _value(raw: str) -> str:
    if raw[:1] in _QUOTED:
        match = _QUOTED[raw[0]].match(raw)
        if not match:
            raise EnvFileError(f"no closing {raw[0]}")
        rest = match.group(2).strip()
        if rest and not rest.startswith("#"):
            raise EnvFileError(f"text after the closing {raw[0]}")
        if raw[0] == "'":
            return match.group(1)
        # Double quotes take the usual escapes (a PEM key on one line); single are literal.
        return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(0)), match.group(1))
    # Unquoted: a comment starts at a `#` after whitespace (or in place of a value), as in
    # .env.example; `a#b` is a value.
    return re.split(r"(?:^|\s+)#", raw, maxsplit=1)[0].strip()


def parse_env_file(path: Path) -> dict[str, str]:
    """Every non-empty KEY=value of `path`; EnvFileError names the line it cannot read."""
    values: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _LINE.match(line)
        try:
            if not match:
                raise EnvFileError("not KEY=value")
            value = _value(match.group(2))
        except EnvFileError as exc:
            raise EnvFileError(f"{path}:{number}: {exc}: {line.strip()}") from None
        if value:
            values[match.group(1)] = value
    return values


def load_env_file(path: Path) -> dict[str, str]:
    """Put `path`'s values into os.environ where not already set (a missing file is no
    error); returns the ones it set."""
    if not path.is_file():
        return {}
    loaded = {key: value for key, value in parse_env_file(path).items() if key not in os.environ}
    os.environ.update(loaded)
    return loaded
