"""k8s/ is a kustomize base: `kubectl kustomize k8s/` renders, offline, every object once,
with every shared shape filled in for its service (no SERVICE left), each image named
once in the images list, and one small kustomization per service in the catalog.

The other deployment tests (consistency, validators, the deploy doc's secrets) all read
this rendered output, never the files under k8s/ themselves.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from tests.deploy import (
    IMAGE_PREFIX,
    K8S_DIR,
    NAMESPACE,
    SERVICE_OVERLAYS,
    containers,
    kustomize,
    load_manifests,
    rendered_k8s,
)
from ticketing_devtools.catalog import SERVICES

# What k8s/base/ writes where a service's name goes.
PLACEHOLDER = "SERVICE"
PART_OF = {"app.kubernetes.io/part-of": "ticketing"}


def kustomization(directory: Path) -> dict:
    return yaml.safe_load((directory / "kustomization.yaml").read_text())


def _image_name(image: str) -> str:
    return image.rsplit(":", 1)[0] if ":" in image.rsplit("/", 1)[-1] else image


def test_every_object_is_filled_in_labelled_and_in_the_namespace():
    manifests = load_manifests()

    assert PLACEHOLDER not in rendered_k8s()
    ids = [(m.doc["apiVersion"], m.kind, m.name) for m in manifests]
    assert len(ids) == len(set(ids))
    for manifest in manifests:
        metadata = manifest.doc["metadata"]
        assert PART_OF.items() <= metadata["labels"].items(), manifest.name
        if manifest.kind != "Namespace":
            assert metadata["namespace"] == NAMESPACE, manifest.name


def test_the_images_list_names_every_image_once_and_nothing_else():
    images = kustomization(K8S_DIR)["images"]
    used = {
        c["image"]
        for m in load_manifests()
        if "template" in m.doc.get("spec", {})
        for c in containers(m)
    }

    names = [entry["name"] for entry in images]
    assert len(names) == len(set(names))
    assert set(names) == {_image_name(image) for image in used}
    for entry in images:
        if entry["name"].startswith(IMAGE_PREFIX):
            # This repository's images: no tag until a deployer (or skaffold) sets one.
            assert entry == {"name": entry["name"], "newName": entry["name"]}
        else:
            # Upstream images carry their tag here, and only here.
            assert set(entry) == {"name", "newTag"}, entry
            assert f"{entry['name']}:{entry['newTag']}" in used


def test_each_service_in_the_catalog_has_its_kustomization_and_nothing_else_does():
    overlays = sorted(p.name for p in SERVICE_OVERLAYS.iterdir() if p.is_dir())

    assert overlays == sorted(s.name for s in SERVICES)
    resources = kustomization(K8S_DIR)["resources"]
    assert [r for r in resources if r.startswith("services/")] == [
        f"services/{s.name}" for s in SERVICES
    ]
    for name in overlays:
        overlay = kustomization(SERVICE_OVERLAYS / name)
        (values,) = yaml.safe_load_all((SERVICE_OVERLAYS / name / "service.yaml").read_text())
        # The one name the shared shapes are filled in with, and the label on everything.
        assert values["kind"] == "ConfigMap"
        assert values["metadata"]["name"] == name
        assert values["metadata"]["annotations"] == {"config.kubernetes.io/local-config": "true"}
        assert overlay["labels"] == [
            {"pairs": {"app.kubernetes.io/name": name}, "includeSelectors": True}
        ]
        assert overlay["resources"] == ["service.yaml"]


def test_every_shared_shape_is_used_and_lives_in_base():
    shapes = {p.name for p in (K8S_DIR / "base").iterdir() if p.is_dir()}
    listed = {
        Path(component).name
        for overlay in SERVICE_OVERLAYS.iterdir()
        for component in kustomization(overlay).get("components", [])
        if component.startswith("../../base/")
    }

    assert listed == shapes


def test_kustomize_fails_on_a_shape_whose_service_is_not_named(tmp_path):
    # Without the local ConfigMap, no replacement has a source: the build must fail, not
    # render SERVICE into names.
    shutil.copytree(K8S_DIR, tmp_path / "k8s")
    (tmp_path / "k8s" / "services" / "tickets" / "service.yaml").write_text(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: tickets\n"
    )

    result = kustomize(tmp_path / "k8s")

    assert result.returncode != 0
    assert "ConfigMap" in result.stderr
