"""The gateway against a real nginx and real (echo) upstreams: no mocks."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from shared_lib.error_messages import (
    BODY_TOO_LARGE,
    GATEWAY_TIMEOUT,
    INTERNAL_ERROR,
    NOT_FOUND,
    SERVICE_UNAVAILABLE,
)
from shared_lib.testing.processes import (
    Process,
    free_port,
    group_running,
    signal_group,
    stop_group,
)
from shared_lib.testing.waiting import wait_for
from tests.deploy import compose_model, rendered_k8s
from ticketing_devtools import gateway as gateway_module
from ticketing_devtools import ingress
from ticketing_devtools.gateway import (
    API_ERROR_MESSAGES,
    LOCALSTRIPE_PREFIX,
    ROUTES_PATH,
    TEMPLATE_PATH,
    NginxConfigError,
    Route,
    RouteTable,
    check_config,
    load_routes,
    nginx_command,
    render_nginx,
    write_config,
)

TIMEOUT = 5
MAX_BODY = 64 * 1024
SLOW_SECONDS = 2.0

# Mirrors gateway/routes.toml, plus routes to the deliberately broken upstreams.
TABLE = RouteTable(
    routes=(
        Route("/api/users", "auth"),
        Route("/admin/auth", "auth"),
        Route("/static/auth", "auth"),
        Route("/api/slow", "slow"),
        Route("/api/down", "down"),
    ),
    default_service="client",
)


def error_json(message: str) -> dict:
    return {"errors": [{"message": message}]}


# --- echo upstreams ---------------------------------------------------------------------


@dataclass
class Backend:
    name: str
    server: ThreadingHTTPServer
    seen: list[str] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        # The slow backend writes to a socket nginx has already given up on; that is
        # the point of the test, not a failure worth a traceback.
        pass


def _handler(backend: Backend, delay: float) -> type[BaseHTTPRequestHandler]:
    class Echo(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            body = self.rfile.read(length) if length else b""
            backend.seen.append(self.path)
            if delay:
                time.sleep(delay)
            status = int(self.headers.get("X-Echo-Status", 200))
            payload = {
                "backend": backend.name,
                "method": self.command,
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body_length": len(body),
                "pad": "x" * int(self.headers.get("X-Echo-Pad", 0)),
            }
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _answer

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Echo


@contextmanager
def run_backend(name: str, delay: float = 0.0) -> Iterator[Backend]:
    server = _QuietServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    backend = Backend(name, server)
    server.RequestHandlerClass = _handler(backend, delay)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield backend
    finally:
        server.shutdown()
        server.server_close()
        thread.join(TIMEOUT)


# --- nginx ------------------------------------------------------------------------------


@dataclass
class Gateway:
    url: str
    port: int
    run_dir: Path
    process: subprocess.Popen


@contextmanager
def run_gateway(
    table: RouteTable, upstreams: dict[str, str], run_dir: Path, **options: str
) -> Iterator[Gateway]:
    port = free_port()
    conf = write_config(
        table, upstreams=upstreams, listen=f"127.0.0.1:{port}", run_dir=run_dir, **options
    )
    check_config(conf, run_dir)
    nginx = Process(
        nginx_command(conf, run_dir),
        cwd=run_dir,
        env=os.environ,
        log_path=run_dir / "nginx.log",
        name="nginx",
        port=port,
    ).start()
    try:
        try:
            nginx.wait_listening(timeout=TIMEOUT)
        except RuntimeError as exc:  # exited, or never listened: the message quotes its log
            pytest.fail(str(exc))
        yield Gateway(nginx.url, port, run_dir, nginx.process)
    finally:
        stop_gateway(nginx.process)


def stop_gateway(process: subprocess.Popen) -> None:
    # SIGQUIT: nginx's graceful shutdown, finishing in-flight requests.
    stop_group(process, TIMEOUT, signum=signal.SIGQUIT)
    # The worker must be gone too, not just the master we waited for.
    try:
        wait_for(lambda: not group_running(process), timeout=TIMEOUT)
    except AssertionError:
        signal_group(process, signal.SIGKILL)
        pytest.fail("nginx left processes behind after shutdown")


@pytest.fixture(scope="module")
def backends() -> Iterator[dict[str, Backend]]:
    with (
        run_backend("auth") as auth,
        run_backend("client") as client,
        run_backend("slow", delay=SLOW_SECONDS) as slow,
    ):
        yield {"auth": auth, "client": client, "slow": slow}


@pytest.fixture(scope="module")
def dead_address() -> Iterator[str]:
    # Bound but never listening: connections are refused, and no other process can
    # take the port while the tests run.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield f"127.0.0.1:{s.getsockname()[1]}"


@pytest.fixture(scope="module")
def gateway(
    backends: dict[str, Backend], dead_address: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    upstreams = {name: b.address for name, b in backends.items()} | {"down": dead_address}
    with run_gateway(
        TABLE,
        upstreams,
        tmp_path_factory.mktemp("gateway"),
        max_body="64k",
        proxy_read_timeout="1s",
        proxy_connect_timeout="1s",
    ) as gw:
        yield gw


def get(gw: Gateway, path: str, **kwargs: object) -> requests.Response:
    return request(gw, "GET", path, **kwargs)


def request(gw: Gateway, method: str, path: str, **kwargs: object) -> requests.Response:
    return requests.request(method, gw.url + path, allow_redirects=False, timeout=TIMEOUT, **kwargs)


def assert_nginx_error(response: requests.Response, status: int, message: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == error_json(message)
    assert "Location" not in response.headers


# --- routing ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "backend"),
    [
        ("/api/users", "auth"),
        ("/api/users?next=%2Fhome&b=2", "auth"),
        ("/api/users/", "auth"),
        ("/api/users/signup?x=1", "auth"),
        ("/api/users/me/sessions/3", "auth"),
        ("/admin/auth", "auth"),
        ("/admin/auth/login/?next=/admin/auth/", "auth"),
        ("/static/auth/css/base.css", "auth"),
        ("/", "client"),
        ("/anything", "client"),
        ("/tickets/42?page=2", "client"),
        ("/api", "client"),  # not under /api/, so it is the web client's like any page
        ("/admin/authx", "client"),
        ("/static/authfoo/x.css", "client"),
    ],
)
def test_routes_to_service_with_path_and_query_preserved(
    gateway: Gateway, path: str, backend: str
) -> None:
    response = get(gateway, path)
    assert response.status_code == 200
    assert "Location" not in response.headers
    body = response.json()
    assert body["backend"] == backend
    assert body["path"] == path
    assert body["method"] == "GET"


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
def test_every_method_is_proxied(gateway: Gateway, method: str) -> None:
    response = request(gateway, method, "/api/users/signup", data=b"{}")
    assert response.status_code == 200
    assert response.json()["method"] == method


@pytest.mark.parametrize(
    "path", ["/api/usersfoo", "/api/nothing", "/api/", "/api/nothing.html", "/api/users2/x"]
)
def test_unrouted_api_paths_get_json_404_from_nginx(
    gateway: Gateway, backends: dict[str, Backend], path: str
) -> None:
    before = {name: len(b.seen) for name, b in backends.items()}
    response = get(gateway, path)
    assert_nginx_error(response, 404, NOT_FOUND)
    assert {name: len(b.seen) for name, b in backends.items()} == before


def test_prefix_without_slash_is_not_redirected(gateway: Gateway) -> None:
    for method in ("GET", "POST"):
        response = request(gateway, method, "/api/users")
        assert response.status_code == 200
        assert "Location" not in response.headers
        assert response.json()["path"] == "/api/users"


# --- headers ----------------------------------------------------------------------------


def test_forwarded_headers(gateway: Gateway) -> None:
    response = get(
        gateway,
        "/api/users/me",
        headers={"X-Forwarded-For": "6.6.6.6, 7.7.7.7", "Forwarded": "for=6.6.6.6"},
    )
    headers = response.json()["headers"]
    assert headers["host"] == f"127.0.0.1:{gateway.port}"
    assert headers["x-forwarded-host"] == f"127.0.0.1:{gateway.port}"
    assert headers["x-forwarded-proto"] == "http"
    assert headers["x-forwarded-port"] == str(gateway.port)
    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert "forwarded" not in headers


def test_only_a_trusted_forwarder_names_the_client_address(
    backends: dict[str, Backend], tmp_path: Path
) -> None:
    # The web client calls from 127.0.0.2 (as the local stack runs it) and names the
    # browser; anyone else claiming an address is ignored, as before.
    with run_gateway(
        TABLE,
        {name: b.address for name, b in backends.items()} | {"down": "127.0.0.1:9"},
        tmp_path,
        trusted_forwarders=["127.0.0.2/32"],
    ) as gw:
        spoofed = get(gw, "/api/users/me", headers={"X-Forwarded-For": "6.6.6.6"})
        session = requests.Session()
        session.get_adapter("http://").init_poolmanager(1, 1, source_address=("127.0.0.2", 0))
        forwarded = session.get(
            gw.url + "/api/users/me", headers={"X-Forwarded-For": "198.51.100.7"}, timeout=TIMEOUT
        )
        unnamed = session.get(gw.url + "/api/users/me", timeout=TIMEOUT)

    assert spoofed.json()["headers"]["x-forwarded-for"] == "127.0.0.1"
    assert forwarded.json()["headers"]["x-forwarded-for"] == "198.51.100.7"
    assert unnamed.json()["headers"]["x-forwarded-for"] == "127.0.0.2"


def test_a_trusted_forwarder_must_be_a_network(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not appear to be an IPv4 or IPv6 network"):
        render_nginx(
            TABLE,
            upstreams={"auth": "a:1", "client": "c:1", "slow": "s:1", "down": "d:1"},
            listen="8080",
            run_dir=tmp_path,
            trusted_forwarders=["127.0.0.2/32; allow all"],
        )


def test_request_id_is_passed_through(gateway: Gateway) -> None:
    response = get(gateway, "/api/users/me", headers={"X-Request-ID": "req-abc-123"})
    assert response.json()["headers"]["x-request-id"] == "req-abc-123"


def test_request_id_is_generated_when_absent(gateway: Gateway) -> None:
    ids = [get(gateway, "/anything").json()["headers"]["x-request-id"] for _ in range(2)]
    assert all(re.fullmatch(r"[0-9a-f]{32}", rid) for rid in ids)
    assert ids[0] != ids[1]


def test_chunked_upload_reaches_service_with_content_length(gateway: Gateway) -> None:
    chunks = [b"a" * 1000, b"b" * 1000]
    response = request(gateway, "POST", "/api/users/signup", data=iter(chunks))
    headers = response.json()["headers"]
    assert headers["content-length"] == "2000"
    assert "transfer-encoding" not in headers
    assert response.json()["body_length"] == 2000


# --- bodies and buffering ---------------------------------------------------------------


def test_body_at_the_limit_is_accepted(gateway: Gateway) -> None:
    # Larger than client_body_buffer_size, so nginx spools it to the temp dir in the
    # run dir: this also proves the workers can write there.
    response = request(gateway, "POST", "/api/users/signup", data=b"x" * MAX_BODY)
    assert response.status_code == 200
    assert response.json()["body_length"] == MAX_BODY


def test_body_over_the_limit_is_413_json_and_never_reaches_service(
    gateway: Gateway, backends: dict[str, Backend]
) -> None:
    before = len(backends["auth"].seen)
    response = request(gateway, "POST", "/api/users/signup", data=b"x" * (MAX_BODY + 1))
    assert_nginx_error(response, 413, BODY_TOO_LARGE)
    assert len(backends["auth"].seen) == before


def test_large_response_is_buffered_through_temp_file(gateway: Gateway) -> None:
    response = get(gateway, "/api/users/big", headers={"X-Echo-Pad": str(512 * 1024)})
    assert response.status_code == 200
    assert len(response.json()["pad"]) == 512 * 1024


# --- upstream failures ------------------------------------------------------------------


def test_upstream_down_is_502_json(gateway: Gateway) -> None:
    assert_nginx_error(get(gateway, "/api/down/x"), 502, SERVICE_UNAVAILABLE)
    assert_nginx_error(request(gateway, "POST", "/api/down"), 502, SERVICE_UNAVAILABLE)


def test_upstream_timeout_is_504_json(gateway: Gateway) -> None:
    # The backend answers after SLOW_SECONDS; a 504 proves nginx gave up first (1 s).
    response = get(gateway, "/api/slow/report")
    assert_nginx_error(response, 504, GATEWAY_TIMEOUT)


@pytest.mark.parametrize("status", [400, 404, 409, 413, 502, 503])
def test_service_errors_pass_through_untouched(gateway: Gateway, status: int) -> None:
    response = get(gateway, "/api/users/me", headers={"X-Echo-Status": str(status)})
    assert response.status_code == status
    assert response.json()["backend"] == "auth"


# --- a table without a default service --------------------------------------------------


def test_without_default_service_other_paths_are_404(
    backends: dict[str, Backend], tmp_path: Path
) -> None:
    table = RouteTable(routes=(Route("/api/users", "auth"),), default_service=None)
    with run_gateway(table, {"auth": backends["auth"].address}, tmp_path) as gw:
        root = get(gw, "/")
        assert root.status_code == 404
        assert "Location" not in root.headers
        assert get(gw, "/anything").status_code == 404
        assert_nginx_error(get(gw, "/api/nothing"), 404, NOT_FOUND)
        assert get(gw, "/api/users").json()["backend"] == "auth"
        process = gw.process
    assert process.returncode is not None


def test_route_for_all_of_api_replaces_the_json_404(
    backends: dict[str, Backend], tmp_path: Path
) -> None:
    table = RouteTable(routes=(Route("/api", "auth"),), default_service="client")
    upstreams = {"auth": backends["auth"].address, "client": backends["client"].address}
    with run_gateway(table, upstreams, tmp_path) as gw:
        assert get(gw, "/api/anything").json()["backend"] == "auth"
        assert get(gw, "/api").json()["backend"] == "auth"
        assert get(gw, "/apix").json()["backend"] == "client"


# --- rendering and the real route table -------------------------------------------------


def test_real_route_table_renders_and_passes_nginx_t(tmp_path: Path) -> None:
    table = load_routes(ROUTES_PATH)
    assert "/api/users" in {route.prefix for route in table.routes}
    upstreams = {service: f"127.0.0.1:{9000 + i}" for i, service in enumerate(table.services)}
    # `nginx -t` really binds the listen address, so it needs a free, unprivileged port.
    listen = f"127.0.0.1:{free_port()}"
    conf = write_config(table, upstreams=upstreams, listen=listen, run_dir=tmp_path)
    check_config(conf, tmp_path)


def test_every_path_nginx_writes_is_in_the_run_dir(tmp_path: Path) -> None:
    text = render_nginx(
        TABLE,
        upstreams=dict.fromkeys(TABLE.services, "127.0.0.1:1"),
        listen="8080",
        run_dir=tmp_path,
    )
    paths = re.findall(r'"(/[^"]*)"', text)
    assert paths
    assert all(Path(p).is_relative_to(tmp_path.resolve()) for p in paths)
    assert "access_log /dev/stdout" in text
    assert "error_log stderr" in text
    assert ("user root;" in text) == (os.geteuid() == 0)
    assert "daemon off;" in text
    assert "server_tokens off;" in text


def test_the_config_is_the_template_filled_in(tmp_path: Path) -> None:
    template = TEMPLATE_PATH.read_text().splitlines()
    text = render_nginx(
        TABLE,
        upstreams=dict.fromkeys(TABLE.services, "127.0.0.1:1"),
        listen="8080",
        run_dir=tmp_path,
    )

    # Every line of the template without a placeholder is in the config, in its order.
    lines = iter(text.splitlines())
    assert all(line in lines for line in template if "%{" not in line)
    assert "%" not in text


def test_a_placeholder_the_renderer_does_not_fill_fails_the_render(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    template = tmp_path / "nginx.conf.template"
    template.write_text(TEMPLATE_PATH.read_text().replace("%{listen}", "%{port}"))
    monkeypatch.setattr(gateway_module, "TEMPLATE_PATH", template)

    with pytest.raises(KeyError, match="port"):
        render_nginx(
            TABLE,
            upstreams=dict.fromkeys(TABLE.services, "127.0.0.1:1"),
            listen="8080",
            run_dir=tmp_path,
        )


def test_render_names_services_without_upstream(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="client, down"):
        render_nginx(
            TABLE,
            upstreams={"auth": "127.0.0.1:1", "slow": "127.0.0.1:2"},
            listen="8080",
            run_dir=tmp_path,
        )


@pytest.mark.parametrize(
    ("option", "value"),
    [("max_body", "1m; evil"), ("proxy_read_timeout", "soon"), ("listen", "80 default")],
)
def test_render_rejects_bad_options(tmp_path: Path, option: str, value: str) -> None:
    kwargs = {"listen": "8080", option: value}
    with pytest.raises(ValueError, match="not a valid nginx value"):
        render_nginx(
            TABLE,
            upstreams=dict.fromkeys(TABLE.services, "127.0.0.1:1"),
            run_dir=tmp_path,
            **kwargs,
        )


def test_check_config_raises_with_nginx_stderr(tmp_path: Path) -> None:
    conf = tmp_path / "nginx.conf"
    conf.write_text("events {}\nhttp { bogus_directive on; }\n")
    with pytest.raises(NginxConfigError, match="bogus_directive"):
        check_config(conf, tmp_path)


def test_nginx_command_runs_in_foreground_inside_run_dir(tmp_path: Path) -> None:
    command = nginx_command(tmp_path / "nginx.conf", tmp_path)
    assert command[0].endswith("nginx")
    assert command[command.index("-p") + 1] == f"{tmp_path.resolve()}/"
    assert command[command.index("-c") + 1] == str(tmp_path.resolve() / "nginx.conf")


def test_error_messages_are_the_documented_ones() -> None:
    assert API_ERROR_MESSAGES == {
        404: "Not Found",
        413: "Request body too large",
        500: "Something went wrong",  # as a service's own 500 says it (docs/api.md)
        502: "Service unavailable",
        503: "Service unavailable",
        504: "Gateway timeout",
    }
    assert API_ERROR_MESSAGES[500] == INTERNAL_ERROR


# --- load_routes validation -------------------------------------------------------------


def write_routes(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "routes.toml"
    path.write_text(text)
    return path


def test_load_routes_reads_default_service_and_services(tmp_path: Path) -> None:
    path = write_routes(
        tmp_path,
        'default_service = "client"\n'
        '[[route]]\nprefix = "/api/users"\nservice = "auth"\n'
        '[[route]]\nprefix = "/api/tickets"\nservice = "tickets"\n',
    )
    table = load_routes(path)
    assert table.routes == (Route("/api/users", "auth"), Route("/api/tickets", "tickets"))
    assert table.default_service == "client"
    assert table.services == {"auth", "tickets", "client"}


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('[[route]]\nprefix = "/api/users/"\nservice = "auth"\n', "must not end with '/'"),
        ('[[route]]\nprefix = "/"\nservice = "auth"\n', "default_service"),
        ('[[route]]\nprefix = "api/users"\nservice = "auth"\n', "must start with '/'"),
        ('[[route]]\nprefix = "/api//users"\nservice = "auth"\n', "path segments"),
        ('[[route]]\nprefix = "/api/users;"\nservice = "auth"\n', "path segments"),
        (
            '[[route]]\nprefix = "/api/users"\nservice = "auth"\n'
            '[[route]]\nprefix = "/api/users"\nservice = "other"\n',
            "duplicate route prefix '/api/users'",
        ),
        ('[[route]]\nprefix = "/api/users"\nservice = "Auth_Svc"\n', "DNS label"),
        ('[[route]]\nprefix = "/api/users"\n', "missing \\['service'\\]"),
        ('[[route]]\nprefix = "/a"\nservice = "auth"\nport = 1\n', "unknown \\['port'\\]"),
        ('default-service = "client"\n', "unknown top-level key"),
        ('default_service = "Client!"\n', "default_service"),
        ("[[route]\n", "not valid TOML"),
    ],
)
def test_load_routes_rejects_invalid_tables(tmp_path: Path, text: str, match: str) -> None:
    path = write_routes(tmp_path, text)
    with pytest.raises(ValueError, match=match) as info:
        load_routes(path)
    assert str(path) in str(info.value)


def test_route_table_built_in_code_is_validated_too() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        RouteTable(routes=(Route("/a", "x"), Route("/a", "y")), default_service=None)
    with pytest.raises(ValueError, match="must not end with '/'"):
        Route("/a/", "x")


# --- the local stack's localstripe ----------------------------------------------------


def test_localstripe_is_served_under_its_prefix_with_the_prefix_stripped(
    backends: dict[str, Backend], tmp_path: Path
) -> None:
    upstreams = {name: b.address for name, b in backends.items()} | {"down": "127.0.0.1:9"}
    with (
        run_backend("localstripe") as stripe,
        run_gateway(TABLE, upstreams, tmp_path, localstripe=stripe.address) as gw,
    ):
        script = get(gw, "/_stripe/js.stripe.com/v3/")
        created = request(gw, "POST", "/_stripe/v1/payment_methods?limit=3&type=card", data=b"x=1")
        bare = get(gw, "/_stripe")
        lookalike = get(gw, "/_stripex/v1/charges")

    assert (script.json()["backend"], script.json()["path"]) == (
        "localstripe",
        "/js.stripe.com/v3/",
    )
    assert created.json()["backend"] == "localstripe"
    assert created.json()["method"] == "POST"
    assert created.json()["path"] == "/v1/payment_methods?limit=3&type=card"
    assert created.json()["body_length"] == 3
    assert (bare.json()["backend"], lookalike.json()["backend"]) == ("client", "client")
    assert stripe.seen == ["/js.stripe.com/v3/", "/v1/payment_methods?limit=3&type=card"]


def test_without_localstripe_its_prefix_is_the_web_clients(gateway: Gateway) -> None:
    response = get(gateway, "/_stripe/v1/charges")

    assert (response.json()["backend"], response.json()["path"]) == (
        "client",
        "/_stripe/v1/charges",
    )


def test_localstripe_needs_an_address_and_a_prefix_no_route_takes(tmp_path: Path) -> None:
    upstreams = dict.fromkeys(TABLE.services, "127.0.0.1:1")
    taken = RouteTable(routes=(*TABLE.routes, Route("/_stripe", "auth")), default_service="client")

    with pytest.raises(ValueError, match="localstripe must be 'host:port'"):
        render_nginx(
            TABLE, upstreams=upstreams, listen="8080", run_dir=tmp_path, localstripe="x; evil"
        )
    with pytest.raises(ValueError, match=r"\['/_stripe'\] clash with localstripe's /_stripe/"):
        render_nginx(taken, upstreams=upstreams, listen="8080", run_dir=tmp_path, localstripe="a:1")


def test_no_deployment_serves_localstripe_to_browsers() -> None:
    # Only the local stack's gateway has it (Stack.write_gateway_config): the Ingress and
    # compose's gateway, rendered and committed, do not, nor anything k8s/ applies.
    prefix = LOCALSTRIPE_PREFIX.rstrip("/")
    for path, text in ingress.generated_files().items():
        assert prefix not in text, path
        assert prefix not in path.read_text(), path
    assert prefix not in rendered_k8s()
    assert prefix not in json.dumps(compose_model())


# --- docker compose: whom the gateway and the services trust -------------------------


def test_the_compose_gateway_trusts_forwarding_from_the_client_address_alone() -> None:
    text = ingress.render_compose_gateway(load_routes())

    trusted = [line.strip() for line in text.splitlines() if "set_real_ip_from" in line]
    assert trusted == ["set_real_ip_from 172.30.57.11/32;"]
    assert ingress.COMPOSE_CLIENT_ADDRESS == "172.30.57.11"


def test_compose_pins_the_gateway_and_client_addresses_and_trusts_only_them() -> None:
    model = compose_model()
    services = model["services"]
    subnet = ipaddress.ip_network(ingress.COMPOSE_SUBNET)
    dynamic = ipaddress.ip_network(ingress.COMPOSE_DYNAMIC_RANGE)

    assert model["networks"]["default"]["ipam"]["config"] == [
        {"subnet": ingress.COMPOSE_SUBNET, "ip_range": ingress.COMPOSE_DYNAMIC_RANGE}
    ]
    # Compose lists every service on `default`, with None when nothing is pinned.
    attachments = {
        name: (spec.get("networks") or {}).get("default") for name, spec in services.items()
    }
    pinned = {
        name: network["ipv4_address"]
        for name, network in attachments.items()
        if network and network.get("ipv4_address")
    }
    assert pinned == {
        "gateway": ingress.COMPOSE_GATEWAY_ADDRESS,
        "client": ingress.COMPOSE_CLIENT_ADDRESS,
    }
    for address in pinned.values():
        # Inside the network, outside what Docker hands to the other containers.
        assert ipaddress.ip_address(address) in subnet
        assert ipaddress.ip_address(address) not in dynamic
    trust = {
        name: (
            spec["environment"].get("TRUSTED_PROXIES"),
            spec["environment"].get("FORWARDED_ALLOW_IPS"),
        )
        for name, spec in services.items()
        if "TRUSTED_PROXIES" in (spec.get("environment") or {})
    }
    gateway_only = (f"{ingress.COMPOSE_GATEWAY_ADDRESS}/32", ingress.COMPOSE_GATEWAY_ADDRESS)
    assert trust == dict.fromkeys(["auth", "tickets", "orders", "payments", "client"], gateway_only)
