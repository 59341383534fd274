"""The operator's Role states the truth, read from what the operator did: every Kubernetes
request it made in this test session is granted by the Helm chart's Role and by
deploy/rbac.yaml, and every permission they grant was used.

What it did comes from kube-apiserver's audit log (teststack/audit.py), not from the code's
own list: `checks.PERMISSIONS`, what `colonies-operator check` asks for, is held equal to the
Role by tests/unit/test_packaging.py. The operator's requests are those with its User-Agents
(tests.helpers.OPERATOR_AGENTS: its KubeApi's and kopf's), whoever it ran as.

This module runs after every other test of the session, whatever order the command line names
files in (marker `after_all`, ordered last by conftest.py): it reads the session stack's log as
it stands then, together with what tests.helpers.fresh_stack kept from the stacks that other
modules (test_install, test_resilience, test_stack_restart) started and stopped before it.
"""

from __future__ import annotations

import pytest

from colonies_operator.checks import Permission
from teststack import audit
from tests.helpers import OPERATOR_AGENTS, STOPPED_STACKS_REQUESTS, SUITE_GAPS
from tests.packaging import by_kind, deploy_roles, granted, render

pytestmark = [pytest.mark.integration, pytest.mark.after_all]

_PATTERNS = ("kopf lists and watches namespaces and CRDs cluster-wide only to resolve a namespace pattern: "
             "the tests' operators serve it-* and rs-*; the chart names its namespaces (watchNamespaces) or "
             "serves all of them (rbac.clusterWide, --all-namespaces), and then kopf does not scan (handlers.py)")
# Requests that no Role decides, each with the reason.
EXEMPT: dict[tuple[str, str, str, str], str] = {
    ("create", "authorization.k8s.io", "selfsubjectaccessreviews", ""):
        "`colonies-operator check` asks what it may do: every authenticated user may (system:basic-user)",
    **{(verb, "", "namespaces", ""): _PATTERNS for verb in ("list", "watch")},
    **{(verb, "apiextensions.k8s.io", "customresourcedefinitions", ""): _PATTERNS for verb in ("list", "watch")},
}
NON_RESOURCE = ("non-resource URLs (/version, discovery) cannot be granted by a Role; every authenticated user "
                "may read them (system:public-info-viewer, system:discovery)")


@pytest.fixture(scope="module")
def operator_requests(request: pytest.FixtureRequest, stack) -> set[audit.Request]:
    if not stack.kube.audit_dir:
        pytest.skip("this stack was started before the test stack kept an audit log: start a new one")
    requests = request.config.stash.get(STOPPED_STACKS_REQUESTS, set()) | set(
        audit.requests(stack.kube.audit_dir, OPERATOR_AGENTS))
    assert requests, f"no request with a User-Agent of {OPERATOR_AGENTS} in the audit logs: did one change?"
    return requests


@pytest.fixture(scope="module")
def roles() -> dict[str, set[Permission]]:
    """What each way to install grants, over its Roles (the operator's and the leader election's)."""
    def union(roles: list[dict]) -> set[Permission]:
        return set().union(*(granted(role["rules"]) for role in roles))
    return {"the chart's Roles": union(by_kind(render(), "Role")), "deploy/rbac.yaml": union(deploy_roles())}


def permission(request: audit.Request) -> Permission:
    return Permission(request.verb, request.resource, request.group, request.subresource)


def exempt(request: audit.Request) -> bool:
    return not request.resource or request.rbac in EXEMPT


def test_every_kubernetes_request_the_operator_made_is_granted_by_the_role(operator_requests, roles):
    for source, grants in roles.items():
        # A Role grants only inside its namespace: a cluster-wide request needs more.
        refused = sorted({str(r) for r in operator_requests
                          if not exempt(r) and not (r.namespace and permission(r) in grants)})
        assert refused == [], f"{source} does not grant what the operator did (exempt: {NON_RESOURCE}; {EXEMPT})"


def test_every_permission_the_role_grants_was_used_by_the_operator(request, operator_requests, roles):
    gaps = request.config.stash.get(SUITE_GAPS, [])
    if gaps:
        pytest.skip(f"not the whole integration suite ran ({'; '.join(gaps)}): a permission unused here may be "
                    "one that a test left out uses")
    used = {permission(r) for r in operator_requests if r.namespace}
    for source, grants in roles.items():
        assert sorted(map(str, grants - used)) == [], (
            f"{source} grants what the operator never did in the whole integration suite; it used only "
            f"{sorted(map(str, used))}")
