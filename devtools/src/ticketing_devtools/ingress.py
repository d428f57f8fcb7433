"""The edge of a deployment, generated from ``gateway/routes.toml`` like the local gateway.

    python -m ticketing_devtools.ingress           # rewrite both generated files
    python -m ticketing_devtools.ingress --check   # exit 1 if either is out of date

Two files come from the one route table, so a path reaches the same service on every
way of running the system (docs/architecture.md):

- ``k8s/ingress.yaml``: the Kubernetes Ingress for ingress-nginx
  (``gateway/ingress.yaml.template`` filled in), one ``Prefix`` path per route (matched
  by whole segments, as the local gateway matches) plus ``/`` for the default service.
  Backends are the Services named after the routes' services.
- ``deploy/compose/nginx.conf``: the docker compose gateway, rendered by
  ``gateway.render_nginx`` exactly as ``make up`` renders its own, with compose's
  service names as upstreams.

Both are committed (a reader sees what is applied) and a test fails when either differs
from what this module renders now.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ticketing_devtools import gateway
from ticketing_devtools.catalog import REPO_ROOT

INGRESS_PATH = REPO_ROOT / "k8s" / "ingress.yaml"
INGRESS_TEMPLATE_PATH = REPO_ROOT / "gateway" / "ingress.yaml.template"
COMPOSE_GATEWAY_PATH = REPO_ROOT / "deploy" / "compose" / "nginx.conf"

NAMESPACE = "ticketing"
INGRESS_NAME = "ticketing"
INGRESS_CLASS = "nginx"
# Every Service in k8s/ names its gunicorn port "http" (container port 8000).
SERVICE_PORT_NAME = "http"

# The local gateway's limits (gateway.render_nginx's defaults), in ingress-nginx's
# annotation units (timeouts in seconds), so both edges refuse and time out alike.
INGRESS_ANNOTATIONS = {
    "nginx.ingress.kubernetes.io/proxy-body-size": "1m",
    "nginx.ingress.kubernetes.io/proxy-connect-timeout": "5",
    "nginx.ingress.kubernetes.io/proxy-read-timeout": "60",
    "nginx.ingress.kubernetes.io/proxy-send-timeout": "60",
}

# One path of the Ingress: a route's prefix and the Service it reaches.
_PATH = """\
          - path: %{prefix}
            pathType: Prefix
            backend:
              service:
                name: %{service}
                port:
                  name: %{port}
"""

# docker-compose.yml: every web service listens on gunicorn's default port, the gateway
# (an unprivileged nginx) on 8080. The project's network has a fixed subnet, and the
# gateway and the web client fixed addresses outside the range Docker allocates from, so
# the gateway trusts X-Forwarded-For from the client's address alone, as `make up`
# trusts the client's, and the services trust only the gateway's (TRUSTED_PROXIES).
COMPOSE_UPSTREAM_PORT = 8000
COMPOSE_GATEWAY_LISTEN = "8080"
COMPOSE_SUBNET = "172.30.57.0/24"
COMPOSE_DYNAMIC_RANGE = "172.30.57.128/25"
COMPOSE_GATEWAY_ADDRESS = "172.30.57.10"
COMPOSE_CLIENT_ADDRESS = "172.30.57.11"
# A tmpfs in the gateway container: nginx's pid file and temporary files.
COMPOSE_GATEWAY_RUN_DIR = Path("/run/gateway")


def render_ingress(table: gateway.RouteTable) -> str:
    """The Ingress manifest (YAML) for ``table``; longest prefix first, for the reader."""
    paths = [(route.prefix, route.service) for route in table.routes]
    paths.sort(key=lambda item: (-len(item[0]), item[0]))
    if table.default_service is not None:
        paths.append(("/", table.default_service))
    text = INGRESS_TEMPLATE_PATH.read_text(encoding="utf-8")
    return gateway.Template(text).substitute(
        name=INGRESS_NAME,
        namespace=NAMESPACE,
        annotations="".join(
            f'    {key}: "{value}"\n' for key, value in INGRESS_ANNOTATIONS.items()
        ),
        ingress_class=INGRESS_CLASS,
        paths="".join(
            gateway.Template(_PATH).substitute(
                prefix=prefix, service=service, port=SERVICE_PORT_NAME
            )
            for prefix, service in paths
        ).rstrip("\n"),
    )


def render_compose_gateway(table: gateway.RouteTable) -> str:
    """The nginx.conf of docker-compose.yml's gateway service."""
    upstreams = {service: f"{service}:{COMPOSE_UPSTREAM_PORT}" for service in table.services}
    # The nginx image's master runs unprivileged, so the file never says `user root;`,
    # and it does not depend on who rendered it.
    text = gateway.render_nginx(
        table,
        upstreams=upstreams,
        listen=COMPOSE_GATEWAY_LISTEN,
        run_dir=COMPOSE_GATEWAY_RUN_DIR,
        trusted_forwarders=[f"{COMPOSE_CLIENT_ADDRESS}/32"],
        master_is_root=False,
    )
    header = (
        "# docker-compose.yml's gateway. Regenerate with `python -m ticketing_devtools.ingress`.\n"
    )
    return header + text


def generated_files(table: gateway.RouteTable | None = None) -> dict[Path, str]:
    """Every generated file and the text it must hold."""
    table = table or gateway.load_routes()
    return {
        INGRESS_PATH: render_ingress(table),
        COMPOSE_GATEWAY_PATH: render_compose_gateway(table),
    }


def stale_files(table: gateway.RouteTable | None = None) -> list[Path]:
    """Generated files whose committed text differs from a fresh render."""
    return [
        path
        for path, text in generated_files(table).items()
        if not path.exists() or path.read_text(encoding="utf-8") != text
    ]


def _shown(path: Path) -> str:
    return str(path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report stale files")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files()
        for path in stale:
            print(f"{_shown(path)} is out of date with gateway/routes.toml")
        return 1 if stale else 0
    for path, text in generated_files().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {_shown(path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
