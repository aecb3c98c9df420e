"""deploy/kubernetes: every manifest is valid against the Kubernetes schemas
(kubernetes-validate, strict: unknown fields are errors), and the kustomizations name files
and objects that exist. No cluster is needed (and none is used)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

kubernetes_validate = pytest.importorskip("kubernetes_validate")

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"
KUBERNETES_VERSION = "1.30.0"


def kustomizations() -> list[Path]:
    return sorted(DEPLOY.rglob("kustomization.yaml"))


def documents(kustomization: Path) -> list[tuple[Path, dict[str, Any]]]:
    """The objects of a kustomization's own resource files (not of the bases it names)."""
    spec = yaml.safe_load(kustomization.read_text())
    found = []
    for resource in spec.get("resources", []):
        path = kustomization.parent / resource
        if path.is_file():
            found += [(path, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return found


def every_object() -> list[tuple[Path, dict[str, Any]]]:
    return [item for k in kustomizations() for item in documents(k)]


def test_there_is_a_base_and_an_overlay() -> None:
    assert DEPLOY / "base" / "kustomization.yaml" in kustomizations()
    assert any("overlays" in path.parts for path in kustomizations())


@pytest.mark.parametrize("kustomization", kustomizations(), ids=lambda p: str(p.parent.name))
def test_every_resource_a_kustomization_names_exists(kustomization: Path) -> None:
    spec = yaml.safe_load(kustomization.read_text())
    for resource in spec["resources"]:
        target = kustomization.parent / resource
        assert target.is_file() or (target / "kustomization.yaml").is_file(), resource


def test_every_object_is_valid_against_the_kubernetes_schemas() -> None:
    objects = every_object()
    assert len(objects) >= 12
    for path, obj in objects:
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            where = f"{path.name}: {obj['kind']} {obj['metadata']['name']}"
            raise AssertionError(f"{where}: {error}") from error


def test_the_scale_out_shape_the_design_asks_for() -> None:
    by_kind: dict[tuple[str, str], dict[str, Any]] = {
        (obj["kind"], obj["metadata"]["name"]): obj for _, obj in every_object()
    }
    assert by_kind[("Deployment", "baton-scheduler")]["spec"]["replicas"] == 2
    assert ("PodDisruptionBudget", "baton-scheduler") in by_kind
    assert ("HorizontalPodAutoscaler", "baton-api") in by_kind
    assert ("Job", "baton-migrate") in by_kind
    assert ("Ingress", "baton") in by_kind
    assert any(kind == "NetworkPolicy" for kind, _ in by_kind)
    for (kind, name), obj in by_kind.items():
        if kind not in ("Deployment", "Job"):
            continue
        pod = obj["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        for container in pod.get("initContainers", []) + pod["containers"]:
            assert container["securityContext"]["allowPrivilegeEscalation"] is False, name
            assert container["resources"]["requests"], name


def test_overlays_patch_only_objects_of_the_base() -> None:
    names = {obj["metadata"]["name"] for _, obj in every_object()}
    for kustomization in kustomizations():
        spec = yaml.safe_load(kustomization.read_text())
        for replica in spec.get("replicas", []):
            assert replica["name"] in names
        for patch in spec.get("patches", []):
            assert patch["target"]["name"] in names
