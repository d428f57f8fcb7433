"""docs/deploy.md's secrets block creates exactly what the manifests use: it runs as written
(bash, the real openssl) against a stand-in `kubectl` that records what it is asked to
create, and every Secret, ConfigMap and key the pods reference must come out of it."""

import json
import os
import shutil
import stat
import subprocess
from urllib.parse import urlsplit

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.deploy import DEPLOY_DOC, by_kind, containers, load_manifests, pod_spec

MARKER = "<!-- secrets: devtools/tests/test_deploy_readme.py"

# Records each call as one JSON line; a --from-file is read at once, as kubectl does,
# since the block deletes the key files afterwards.
FAKE_KUBECTL = """#!/usr/bin/env python3
import json, os, sys
args = sys.argv[1:]
files = {}
for arg in args:
    if arg.startswith("--from-file="):
        key, _, path = arg.removeprefix("--from-file=").partition("=")
        files[key] = open(path).read()
with open(os.environ["KUBECTL_LOG"], "a") as log:
    log.write(json.dumps({"args": args, "files": files}) + "\\n")
"""


def secrets_block() -> str:
    text = DEPLOY_DOC.read_text()
    start = text.index(MARKER)
    fence = text.index("```sh\n", start) + len("```sh\n")
    return text[fence : text.index("```", fence)]


@pytest.fixture(scope="module")
def created(tmp_path_factory):
    """{(kind, name): {key: value}} for everything the block creates."""
    work = tmp_path_factory.mktemp("readme")
    bin_dir = work / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "kubectl"
    fake.write_text(FAKE_KUBECTL)
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    log = work / "kubectl.log"
    assert shutil.which("openssl"), "the deploy doc's block needs openssl"
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", secrets_block()],
        cwd=work,
        env={
            "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "KUBECTL_LOG": str(log),
            "STRIPE_SECRET_KEY": "sk_test_readme",
            "STRIPE_WEBHOOK_SECRET": "whsec_readme",
        },
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert list(work.glob("*.pem")) == [], "the block leaves key files behind"
    objects = {}
    for line in log.read_text().splitlines():
        call = json.loads(line)
        args = call["args"]
        assert args[:3] == ["-n", "ticketing", "create"], args
        kind = "Secret" if args[3] == "secret" else "ConfigMap"
        name = args[5] if kind == "Secret" else args[4]
        values = dict(call["files"])
        for arg in args:
            if arg.startswith("--from-literal="):
                key, _, value = arg.removeprefix("--from-literal=").partition("=")
                values[key] = value
        assert (kind, name) not in objects, f"{kind} {name} created twice"
        objects[(kind, name)] = values
    return objects


def referenced():
    """{(kind, name): {keys}} the workloads in k8s/ need, ConfigMaps in k8s/ excepted."""
    manifests = load_manifests()
    in_repo = set(by_kind(manifests, "ConfigMap"))
    needed: dict[tuple[str, str], set[str]] = {}
    for manifest in manifests:
        if manifest.kind not in ("Deployment", "StatefulSet"):
            continue
        spec = pod_spec(manifest)
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for container in containers(manifest):
            # Claim templates (StatefulSet data) are not in `volumes`, and hold no keys.
            mounts = {
                m["mountPath"]: volumes[m["name"]]
                for m in container.get("volumeMounts", [])
                if m["name"] in volumes
            }
            for item in container.get("env", []):
                ref = item.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    needed.setdefault(("Secret", ref["name"]), set()).add(ref["key"])
                value = item.get("value", "")
                for path, volume in mounts.items():
                    if item["name"].endswith("_FILE") and value.startswith(path + "/"):
                        key = value.removeprefix(path + "/")
                        if "secret" in volume:
                            name = ("Secret", volume["secret"]["secretName"])
                        elif "configMap" in volume:
                            name = ("ConfigMap", volume["configMap"]["name"])
                        else:
                            continue
                        if name[1] not in in_repo:
                            needed.setdefault(name, set()).add(key)
    return needed


def test_the_readme_creates_every_secret_and_key_the_pods_use_and_nothing_else(created):
    needed = referenced()

    assert set(created) == set(needed)
    for name, keys in needed.items():
        assert keys <= set(created[name]), f"{name}: missing {keys - set(created[name])}"


def test_database_urls_name_the_role_password_database_and_service_they_are_made_with(created):
    services = by_kind(load_manifests(), "Service")
    for (_kind, name), values in created.items():
        if not name.endswith("-db"):
            continue
        url = urlsplit(values["url"])
        assert url.scheme == "postgresql"
        assert (url.username, url.password) == (values["username"], values["password"])
        assert url.path == "/" + values["database"]
        assert url.hostname == f"{name}.ticketing.svc"
        assert name in services
        assert url.port == 5432


def test_the_stripe_secret_holds_the_key_and_the_webhook_signing_secret_exported(created):
    assert created[("Secret", "stripe")] == {
        "secret-key": "sk_test_readme",
        "webhook-secret": "whsec_readme",
    }


def test_the_rabbitmq_url_uses_its_user_and_the_vhost_the_broker_creates(created):
    values = created[("Secret", "rabbitmq")]
    config = by_kind(load_manifests(), "ConfigMap")["rabbitmq-config"]
    vhost = next(
        line.split("=")[1].strip()
        for line in config.doc["data"]["ticketing.conf"].splitlines()
        if line.startswith("default_vhost")
    )

    url = urlsplit(values["url"])
    assert (url.username, url.password) == (values["username"], values["password"])
    assert url.hostname == "rabbitmq.ticketing.svc"
    assert url.path == "/" + vhost


def test_the_jwt_keys_are_an_ed25519_pair(created):
    private = serialization.load_pem_private_key(
        created[("Secret", "jwt-private-key")]["private.pem"].encode(), password=None
    )
    public_pem = created[("ConfigMap", "jwt-public-key")]["public.pem"].encode()

    assert isinstance(private, Ed25519PrivateKey)
    assert private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ) == serialization.load_pem_public_key(public_pem).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def test_the_readme_documents_the_ingress_nginx_settings_the_client_relies_on():
    section = DEPLOY_DOC.read_text().split("## Deploy", 1)[1].split("\n## ", 1)[0]
    settings = yaml.safe_load(section.split("```yaml\n", 1)[1].split("```", 1)[0])

    assert settings["use-forwarded-headers"] == "true"
    assert "proxy-real-ip-cidr" in settings
