"""The ways to install the operator, as objects: the Helm chart rendered by `helm template`,
deploy/'s manifests, and the permissions their RBAC rules grant. helm comes from the test
stack's binary cache; a test that needs it is skipped until it is built."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from colonies_operator import checks
from teststack import versions

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "charts" / "colonies-operator"
DEPLOY = ROOT / "deploy"
KUBE_VERSION = versions.KUBERNETES.lstrip("v")


def binary(name: str) -> Path:
    path = versions.binary(name)
    if not path.exists():
        pytest.skip(f"{name} is not built yet: run `python3 -m teststack build`")
    return path


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(binary("helm")), *args], capture_output=True, text=True, timeout=60)


def render(*sets: str, namespace: str = "colonies-operator", hooks: bool = True) -> list[dict[str, Any]]:
    """The chart's objects for release "colonies-operator" with these --set values."""
    args = ["template", "colonies-operator", str(CHART), "-n", namespace, "--kube-version", KUBE_VERSION]
    args += [] if hooks else ["--no-hooks"]
    for value in sets:
        args += ["--set", value]
    result = helm(*args)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def granted(rules: list[dict[str, Any]]) -> set[checks.Permission]:
    permissions = set()
    for rule in rules:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                name, _, sub = resource.partition("/")
                permissions |= {checks.Permission(verb, name, group, sub) for verb in rule["verbs"]}
    return permissions


def deploy_roles() -> list[dict[str, Any]]:
    """The Roles of deploy/rbac.yaml: the operator's, and the leader election's."""
    return [o for o in yaml.safe_load_all((DEPLOY / "rbac.yaml").read_text()) if o and o["kind"] == "Role"]
