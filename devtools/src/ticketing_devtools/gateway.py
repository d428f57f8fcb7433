"""The local gateway: nginx, ``gateway/nginx.conf.template`` filled in from the route
table in ``gateway/routes.toml``.

    table = load_routes()
    conf = write_config(table, upstreams={"auth": "127.0.0.1:8001"}, listen="8080", run_dir=run)
    subprocess.Popen(nginx_command(conf, run))  # foreground; stop with SIGQUIT or SIGTERM

The same table later produces the Kubernetes Ingress, so the config here routes exactly
as ingress-nginx does for ``pathType: Prefix``: a prefix ``P`` becomes ``location = P``
plus ``location P/``, which matches by whole path segments (``/api/usersfoo`` is not
under ``/api/users``) and never answers ``P`` with a slash-appending redirect.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import string
import subprocess
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared_lib import error_messages as messages
from ticketing_devtools.catalog import REPO_ROOT

ROUTES_PATH = REPO_ROOT / "gateway" / "routes.toml"
TEMPLATE_PATH = REPO_ROOT / "gateway" / "nginx.conf.template"
NGINX = "/usr/sbin/nginx"
CONF_NAME = "nginx.conf"

# Statuses nginx itself can produce while serving an /api/ path, answered in the
# services' error shape and words so API clients never have to parse an nginx HTML page.
API_ERROR_MESSAGES: dict[int, str] = {
    404: messages.NOT_FOUND,
    413: messages.BODY_TOO_LARGE,
    500: messages.INTERNAL_ERROR,
    502: messages.SERVICE_UNAVAILABLE,
    503: messages.SERVICE_UNAVAILABLE,
    504: messages.GATEWAY_TIMEOUT,
}

API_PREFIX = "/api"

# Where the local stack's gateway serves its localstripe to the browser (render_nginx's
# `localstripe`): the Stripe.js stand-in and the API it calls. Only there: the Ingress
# and compose's gateway (ingress.py) never have it; a real deployment's browsers talk to
# Stripe itself.
LOCALSTRIPE_PREFIX = "/_stripe/"

# ingress-nginx's strict path validation (on by default since controller 1.12) only
# accepts these characters for Prefix paths; holding the local table to the same rule
# means a table that works here cannot be rejected by the cluster later. It also keeps
# every prefix safe to paste unquoted into nginx.conf.
_PREFIX_RE = re.compile(r"^(/[A-Za-z0-9_-]+)+$")
# Service names become Kubernetes Service names, i.e. DNS-1035 labels.
_SERVICE_RE = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
_HOSTPORT_RE = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):[0-9]{1,5}$")
_LISTEN_RE = re.compile(r"^(\[[0-9A-Fa-f:.]+\]:|[A-Za-z0-9.-]+:)?[0-9]{1,5}$")
_SIZE_RE = re.compile(r"^[0-9]+[kKmMgG]?$")
_TIME_RE = re.compile(r"^([0-9]+(ms|s|m|h|d)?)+$")

_TABLE_KEYS = {"route", "default_service"}
_ROUTE_KEYS = {"prefix", "service"}
_TEMP_DIRS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


class NginxConfigError(RuntimeError):
    """``nginx -t`` rejected a rendered config; the message carries nginx's stderr."""


@dataclass(frozen=True)
class Route:
    prefix: str
    service: str

    def __post_init__(self) -> None:
        if not isinstance(self.prefix, str) or not self.prefix.startswith("/"):
            raise ValueError(f"route prefix {self.prefix!r} must start with '/'")
        if self.prefix == "/":
            raise ValueError("route prefix '/' is not allowed; set default_service instead")
        if self.prefix.endswith("/"):
            raise ValueError(
                f"route prefix {self.prefix!r} must not end with '/' "
                f"(write {self.prefix.rstrip('/')!r}; it already matches the paths below it)"
            )
        if not _PREFIX_RE.match(self.prefix):
            raise ValueError(
                f"route prefix {self.prefix!r} must be non-empty path segments of "
                "letters, digits, '_' and '-' (what ingress-nginx accepts for Prefix paths)"
            )
        _check_service(self.service, f"service of route {self.prefix!r}")


@dataclass(frozen=True)
class RouteTable:
    routes: tuple[Route, ...]
    default_service: str | None = None

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for route in self.routes:
            if route.prefix in seen:
                raise ValueError(f"duplicate route prefix {route.prefix!r}")
            seen.add(route.prefix)
        if self.default_service is not None:
            _check_service(self.default_service, "default_service")

    @property
    def services(self) -> frozenset[str]:
        """Every service the table sends traffic to, the default one included."""
        named = {route.service for route in self.routes}
        if self.default_service is not None:
            named.add(self.default_service)
        return frozenset(named)


def _check_service(name: object, what: str) -> None:
    if not isinstance(name, str) or not _SERVICE_RE.match(name):
        raise ValueError(
            f"{what} {name!r} must be a lowercase DNS label (a-z, 0-9, '-'), "
            "as it becomes a Kubernetes Service name"
        )


def load_routes(path: Path = ROUTES_PATH) -> RouteTable:
    """Read and validate the route table; every problem is a ValueError naming the file."""
    with path.open("rb") as f:
        try:
            data = tomllib.load(f)
        except tomllib.TOMLDecodeError as e:
            raise ValueError(f"{path}: not valid TOML: {e}") from e
    try:
        return _parse_table(data)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from e


def _parse_table(data: dict[str, object]) -> RouteTable:
    # Unknown keys are rejected so a typo (`default-service`, `[[routes]]`) fails loudly
    # instead of silently routing nothing.
    unknown = sorted(set(data) - _TABLE_KEYS)
    if unknown:
        raise ValueError(f"unknown top-level key(s) {unknown}; expected {sorted(_TABLE_KEYS)}")
    raw_routes = data.get("route", [])
    if not isinstance(raw_routes, list):
        raise ValueError("`route` must be an array of tables, written [[route]]")
    routes = []
    for number, raw in enumerate(raw_routes, start=1):
        if not isinstance(raw, dict):
            raise ValueError(f"route #{number} must be a table")
        missing = sorted(_ROUTE_KEYS - set(raw))
        extra = sorted(set(raw) - _ROUTE_KEYS)
        if missing or extra:
            raise ValueError(
                f"route #{number} must have exactly the keys {sorted(_ROUTE_KEYS)}"
                f" (missing {missing}, unknown {extra})"
            )
        try:
            routes.append(Route(prefix=raw["prefix"], service=raw["service"]))
        except ValueError as e:
            raise ValueError(f"route #{number}: {e}") from e
    default_service = data.get("default_service")
    if default_service is not None and not isinstance(default_service, str):
        raise ValueError(f"default_service must be a string, not {default_service!r}")
    return RouteTable(routes=tuple(routes), default_service=default_service)


def api_error_body(status: int) -> str:
    """The JSON body the gateway answers with for an nginx-made error on an /api/ path."""
    return json.dumps({"errors": [{"message": API_ERROR_MESSAGES[status]}]})


def _is_api(prefix: str) -> bool:
    return prefix == API_PREFIX or prefix.startswith(API_PREFIX + "/")


def _quote(value: str) -> str:
    if any(c in value for c in '"\\\n\r$'):
        raise ValueError(f"{value!r} cannot be written into nginx.conf")
    return f'"{value}"'


def _return_json(status: int) -> str:
    # Single-quoted so the JSON's double quotes need no escaping; the messages are our
    # own constants, so they never contain quotes or nginx variables.
    return f"return {status} '{api_error_body(status)}';"


def _upstream_name(service: str) -> str:
    return "svc_" + service.replace("-", "_")


def _check_option(name: str, value: str, pattern: re.Pattern[str]) -> None:
    if not pattern.match(value):
        raise ValueError(f"{name}={value!r} is not a valid nginx value")


class Template(string.Template):
    """The generated files' templates (gateway/*.template): placeholders are %{name},
    since nginx's own variables start with `$`; a stray `%` fails the render."""

    delimiter = "%"


# Blocks that appear only under a condition, or once per service or route; the template
# places them. Each is whole lines, so an absent block leaves no blank line behind.
_ROOT_MASTER = """\
# The master runs as root, so nginx would drop its workers to `nobody`, who
# cannot enter a root-owned run dir (pytest tmp dirs are 0700) to buffer
# request bodies and large responses; the workers would answer 500 instead.
user root;
"""
_TRUSTED_FORWARDERS = """\
        # ...except from the web client, which calls the APIs for a browser
        # and names it: from these addresses only, $remote_addr is the
        # right-most X-Forwarded-For entry they send (the realip module).
%{addresses}        real_ip_header X-Forwarded-For;
"""
_UPSTREAM = """\
    upstream %{name} {
        server %{address};
    }
"""
_LOCATION = """\

        location %{location} {
%{body}        }
"""
_LOCALSTRIPE = """\

        # The local stack's localstripe, for the browser: Stripe.js's stand-in and the
        # API it calls. proxy_pass with a path replaces the matched prefix with it, so
        # %{prefix}v1/x reaches localstripe as /v1/x.
        location %{prefix} {
            proxy_pass http://%{address}/;
        }
"""
_UNROUTED_API = """\

        # /api/ paths no route claims are the API's 404, not the web client's.
        location %{prefix}/ {
            %{answer}
        }
"""


def _block(text: str, **values: str) -> str:
    return Template(text).substitute(values)


def _locations(table: RouteTable, localstripe: str | None) -> str:
    """Every location of the server block: the routes, the JSON 404 for unrouted /api/
    paths, localstripe if given, the default service, and the named locations of the
    JSON error pages."""
    blocks = []
    api_error_pages = "".join(
        f"            error_page {status} @api_{status};\n" for status in API_ERROR_MESSAGES
    )
    # Longest first only for the reader: nginx picks the longest matching prefix anyway.
    for route in sorted(table.routes, key=lambda r: (-len(r.prefix), r.prefix)):
        errors = api_error_pages if _is_api(route.prefix) else ""
        proxy = f"            proxy_pass http://{_upstream_name(route.service)};\n"
        for location in (f"= {route.prefix}", f"{route.prefix}/"):
            blocks.append(_block(_LOCATION, location=location, body=errors + proxy))
    if API_PREFIX not in {route.prefix for route in table.routes}:
        blocks.append(_block(_UNROUTED_API, prefix=API_PREFIX, answer=_return_json(404)))
    if table.default_service is None:
        default = "            return 404;\n"
    else:
        default = f"            proxy_pass http://{_upstream_name(table.default_service)};\n"
    if localstripe is not None:
        blocks.append(_block(_LOCALSTRIPE, prefix=LOCALSTRIPE_PREFIX, address=localstripe))
        # Without it the bare prefix would get nginx's slash-appending redirect; it is
        # any other path's, as it is without localstripe.
        bare = f"= {LOCALSTRIPE_PREFIX.rstrip('/')}"
        blocks.append(_block(_LOCATION, location=bare, body=default))
    blocks.append(_block(_LOCATION, location="/", body=default))
    for status in API_ERROR_MESSAGES:
        answer = f"            {_return_json(status)}\n"
        blocks.append(_block(_LOCATION, location=f"@api_{status}", body=answer))
    return "".join(blocks)


def render_nginx(
    table: RouteTable,
    *,
    upstreams: Mapping[str, str],
    listen: str,
    run_dir: Path,
    max_body: str = "1m",
    proxy_read_timeout: str = "60s",
    proxy_connect_timeout: str = "5s",
    trusted_forwarders: Sequence[str] = (),
    master_is_root: bool | None = None,
    localstripe: str | None = None,
) -> str:
    """Return the nginx.conf text (``gateway/nginx.conf.template`` filled in);
    ``upstreams`` maps each service to ``host:port``.

    ``master_is_root``: whether nginx's master will run as root (default: whether we are
    root now, as `make up` starts it); the compose gateway says False, since its image
    runs nginx unprivileged whoever renders the file.

    ``trusted_forwarders``: networks (the web client) whose X-Forwarded-For the gateway
    believes, so the browser address they forward is what the services see.

    ``localstripe``: ``host:port`` of a localstripe to serve under LOCALSTRIPE_PREFIX,
    the prefix stripped (the local stack's; nothing else renders one).
    """
    forwarders = [str(ipaddress.ip_network(cidr, strict=True)) for cidr in trusted_forwarders]
    missing = sorted(table.services - set(upstreams))
    if missing:
        raise ValueError(f"no upstream address for service(s): {', '.join(missing)}")
    for service in sorted(table.services):
        if not _HOSTPORT_RE.match(upstreams[service]):
            raise ValueError(
                f"upstream for {service!r} must be 'host:port', not {upstreams[service]!r}"
            )
    if localstripe is not None:
        if not _HOSTPORT_RE.match(localstripe):
            raise ValueError(f"localstripe must be 'host:port', not {localstripe!r}")
        clashing = [
            r.prefix for r in table.routes if (r.prefix + "/").startswith(LOCALSTRIPE_PREFIX)
        ]
        if clashing:
            raise ValueError(f"route(s) {clashing} clash with localstripe's {LOCALSTRIPE_PREFIX}")
    _check_option("listen", listen, _LISTEN_RE)
    _check_option("max_body", max_body, _SIZE_RE)
    _check_option("proxy_read_timeout", proxy_read_timeout, _TIME_RE)
    _check_option("proxy_connect_timeout", proxy_connect_timeout, _TIME_RE)
    run = run_dir.resolve()
    if master_is_root is None:
        master_is_root = os.geteuid() == 0

    real_ip = ""
    if forwarders:
        addresses = "".join(f"        set_real_ip_from {cidr};\n" for cidr in forwarders)
        real_ip = _block(_TRUSTED_FORWARDERS, addresses=addresses)
    return Template(TEMPLATE_PATH.read_text(encoding="utf-8")).substitute(
        user=_ROOT_MASTER if master_is_root else "",
        pid_path=_quote(str(run / "nginx.pid")),
        lock_path=_quote(str(run / "nginx.lock")),
        **{f"{name}_temp_path": _quote(str(run / "tmp" / name)) for name in _TEMP_DIRS},
        upstreams="".join(
            _block(_UPSTREAM, name=_upstream_name(service), address=upstreams[service])
            for service in sorted(table.services)
        ),
        listen=listen,
        max_body=max_body,
        real_ip=real_ip,
        proxy_connect_timeout=proxy_connect_timeout,
        proxy_read_timeout=proxy_read_timeout,
        locations=_locations(table, localstripe),
    )


def write_config(table: RouteTable, *, run_dir: Path, **options: Any) -> Path:
    """Render the config into ``run_dir`` (created with its temp dirs); return its path.
    ``options`` are render_nginx's (``upstreams`` and ``listen`` are required)."""
    text = render_nginx(table, run_dir=run_dir, **options)
    run = run_dir.resolve()
    for name in _TEMP_DIRS:
        (run / "tmp" / name).mkdir(parents=True, exist_ok=True)
    conf_path = run / CONF_NAME
    conf_path.write_text(text, encoding="utf-8")
    return conf_path


def nginx_command(conf_path: Path, run_dir: Path, *, nginx: str = NGINX) -> list[str]:
    """The argv that runs the gateway in the foreground (``daemon off;`` is in the conf)."""
    # -e: nginx opens its compiled-in error log before it has read the config; point it
    # at stderr so nothing outside the run dir is ever touched.
    return [
        nginx,
        "-p",
        f"{run_dir.resolve()}/",
        "-c",
        str(conf_path.resolve()),
        "-e",
        "stderr",
    ]


def check_config(conf_path: Path, run_dir: Path, *, nginx: str = NGINX) -> None:
    """Run ``nginx -t`` on the config; raise NginxConfigError with nginx's stderr if bad."""
    result = subprocess.run(
        [*nginx_command(conf_path, run_dir, nginx=nginx), "-t", "-q"],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise NginxConfigError(
            f"nginx rejected {conf_path} (exit {result.returncode}):\n{result.stderr.strip()}"
        )
