"""The local gateway: nginx rendered from the route table in ``gateway/routes.toml``.

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
import subprocess
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ticketing_devtools.catalog import REPO_ROOT

ROUTES_PATH = REPO_ROOT / "gateway" / "routes.toml"
NGINX = "/usr/sbin/nginx"
CONF_NAME = "nginx.conf"

NOT_FOUND_MESSAGE = "Not Found"
BODY_TOO_LARGE_MESSAGE = "Request body too large"
SERVICE_UNAVAILABLE_MESSAGE = "Service unavailable"
GATEWAY_TIMEOUT_MESSAGE = "Gateway timeout"
INTERNAL_ERROR_MESSAGE = "Internal server error"

# Statuses nginx itself can produce while serving an /api/ path, answered in the
# services' error shape so API clients never have to parse an nginx HTML page.
API_ERROR_MESSAGES: dict[int, str] = {
    404: NOT_FOUND_MESSAGE,
    413: BODY_TOO_LARGE_MESSAGE,
    500: INTERNAL_ERROR_MESSAGE,
    502: SERVICE_UNAVAILABLE_MESSAGE,
    503: SERVICE_UNAVAILABLE_MESSAGE,
    504: GATEWAY_TIMEOUT_MESSAGE,
}

API_PREFIX = "/api"

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
) -> str:
    """Return the nginx.conf text; ``upstreams`` maps each service to ``host:port``.

    ``master_is_root``: whether nginx's master will run as root (default: whether we are
    root now, as `make up` starts it); the compose gateway says False, since its image
    runs nginx unprivileged whoever renders the file.

    ``trusted_forwarders``: networks (the web client) whose X-Forwarded-For the gateway
    believes, so the browser address they forward is what the services see.
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
    _check_option("listen", listen, _LISTEN_RE)
    _check_option("max_body", max_body, _SIZE_RE)
    _check_option("proxy_read_timeout", proxy_read_timeout, _TIME_RE)
    _check_option("proxy_connect_timeout", proxy_connect_timeout, _TIME_RE)
    run = run_dir.resolve()

    lines = ["# Generated by ticketing_devtools.gateway from gateway/routes.toml; do not edit."]
    if master_is_root is None:
        master_is_root = os.geteuid() == 0
    if master_is_root:
        lines += [
            "# The master runs as root, so nginx would drop its workers to `nobody`, who",
            "# cannot enter a root-owned run dir (pytest tmp dirs are 0700) to buffer",
            "# request bodies and large responses; the workers would answer 500 instead.",
            "user root;",
        ]
    lines += [
        "worker_processes 1;",
        "# Foreground, so the supervisor owns the process and sees its exit.",
        "daemon off;",
        f"pid {_quote(str(run / 'nginx.pid'))};",
        f"lock_file {_quote(str(run / 'nginx.lock'))};",
        "error_log stderr warn;",
        "",
        "events {",
        "    worker_connections 256;",
        "}",
        "",
        "http {",
        "    server_tokens off;",
        "    log_format gateway '$status $request_method $request_uri -> $upstream_addr '",
        "                       'upstream_time=$upstream_response_time '",
        "                       'bytes=$body_bytes_sent rid=$gateway_request_id';",
        "    access_log /dev/stdout gateway;",
        "",
        "    # The compiled-in temp paths are under /var/lib/nginx; nginx creates and",
        "    # writes them, so they must live in the run dir like everything else.",
    ]
    lines += [f"    {name}_temp_path {_quote(str(run / 'tmp' / name))};" for name in _TEMP_DIRS]
    lines += [
        "",
        "    # Requests that carry an ID keep it end to end; the rest get one here.",
        "    map $http_x_request_id $gateway_request_id {",
        '        "" $request_id;',
        "        default $http_x_request_id;",
        "    }",
        "",
    ]
    for service in sorted(table.services):
        lines += [
            f"    upstream {_upstream_name(service)} {{",
            f"        server {upstreams[service]};",
            "    }",
        ]
    lines += [
        "",
        "    server {",
        f"        listen {listen};",
        "",
        "        # Never invent redirects: a path either reaches a service or gets an error.",
        "        absolute_redirect off;",
        "        port_in_redirect off;",
        "        server_name_in_redirect off;",
        "",
        f"        client_max_body_size {max_body};",
        "        # No extension-based types: the only bodies nginx writes itself are the",
        "        # JSON errors, even for a path like /api/x.html.",
        "        types {}",
        "        default_type application/json;",
        "",
        "        proxy_http_version 1.1;",
        "        # HTTP/1.1 without `Connection: close`, as ingress-nginx sends it. There is",
        "        # no upstream keepalive pool: dev servers drop idle connections at will, and a",
        "        # reused dead connection would turn a POST into a spurious 502.",
        '        proxy_set_header Connection "";',
        "        proxy_set_header Host $http_host;",
        "        proxy_set_header X-Forwarded-Host $http_host;",
        "        proxy_set_header X-Forwarded-Proto $scheme;",
        "        proxy_set_header X-Forwarded-Port $server_port;",
        "        # This gateway is the edge and the services trust what it says, so whatever",
        "        # the client claims in X-Forwarded-For is replaced, not appended to; an",
        "        # appended list would let any client pick the address the services see.",
        "        proxy_set_header X-Forwarded-For $remote_addr;",
        *(
            [
                "        # ...except from the web client, which calls the APIs for a browser",
                "        # and names it: from these addresses only, $remote_addr is the",
                "        # right-most X-Forwarded-For entry they send (the realip module).",
                *(f"        set_real_ip_from {cidr};" for cidr in forwarders),
                "        real_ip_header X-Forwarded-For;",
            ]
            if forwarders
            else []
        ),
        '        proxy_set_header Forwarded "";',
        "        proxy_set_header X-Request-ID $gateway_request_id;",
        "        # Buffer whole bodies so services get a Content-Length, never chunked input.",
        "        proxy_request_buffering on;",
        "        proxy_redirect off;",
        f"        proxy_connect_timeout {proxy_connect_timeout};",
        f"        proxy_read_timeout {proxy_read_timeout};",
        f"        proxy_send_timeout {proxy_read_timeout};",
        "        # Services' own error responses pass through untouched.",
        "        proxy_intercept_errors off;",
    ]

    api_error_pages = [
        f"            error_page {status} @api_{status};" for status in API_ERROR_MESSAGES
    ]
    # Longest first only for the reader: nginx picks the longest matching prefix anyway.
    for route in sorted(table.routes, key=lambda r: (-len(r.prefix), r.prefix)):
        errors = api_error_pages if _is_api(route.prefix) else []
        for location in (f"= {route.prefix}", f"{route.prefix}/"):
            lines += [
                "",
                f"        location {location} {{",
                *errors,
                f"            proxy_pass http://{_upstream_name(route.service)};",
                "        }",
            ]
    if API_PREFIX not in {route.prefix for route in table.routes}:
        lines += [
            "",
            "        # /api/ paths no route claims are the API's 404, not the web client's.",
            f"        location {API_PREFIX}/ {{",
            f"            {_return_json(404)}",
            "        }",
        ]
    lines += ["", "        location / {"]
    if table.default_service is None:
        lines.append("            return 404;")
    else:
        lines.append(f"            proxy_pass http://{_upstream_name(table.default_service)};")
    lines.append("        }")
    for status in API_ERROR_MESSAGES:
        lines += [
            "",
            f"        location @api_{status} {{",
            f"            {_return_json(status)}",
            "        }",
        ]
    lines += ["    }", "}", ""]
    return "\n".join(lines)


def write_config(
    table: RouteTable,
    *,
    upstreams: Mapping[str, str],
    listen: str,
    run_dir: Path,
    max_body: str = "1m",
    proxy_read_timeout: str = "60s",
    proxy_connect_timeout: str = "5s",
    trusted_forwarders: Sequence[str] = (),
) -> Path:
    """Render the config into ``run_dir`` (created with its temp dirs); return its path."""
    text = render_nginx(
        table,
        upstreams=upstreams,
        listen=listen,
        run_dir=run_dir,
        max_body=max_body,
        proxy_read_timeout=proxy_read_timeout,
        proxy_connect_timeout=proxy_connect_timeout,
        trusted_forwarders=trusted_forwarders,
    )
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
