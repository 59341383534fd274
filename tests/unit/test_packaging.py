"""The ways to install the operator agree with each other and with the code: the Helm chart
renders and lints clean, its values schema rejects bad values with a clear message, its RBAC
grants exactly what the operator uses (`checks.PERMISSIONS`), deploy/ holds the same objects
as the chart's defaults, and every copy of the CRD and of the version is the same.

helm and kubectl (for kustomize) come from the test stack's binary cache; nothing here needs
a running cluster."""

from __future__ import annotations

import re
import subprocess
from typing import Any

import pytest
import yaml

import colonies_operator
from colonies_operator import checks, cli, config as cfg, leadership
from tests.packaging import CHART, DEPLOY, KUBE_VERSION, ROOT, binary, by_kind, granted, helm, render

CRD = ROOT / "crds" / "colonyexecutor.yaml"
HELM_ONLY_LABELS = ("helm.sh/chart", "app.kubernetes.io/managed-by")


def render_error(*sets: str) -> str:
    args = ["template", "colonies-operator", str(CHART), "--kube-version", KUBE_VERSION]
    for value in sets:
        args += ["--set", value]
    result = helm(*args)
    assert result.returncode != 0, f"{sets} rendered, but should have been refused"
    return result.stderr


def container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    [deployment] = by_kind(objects, "Deployment")
    [operator] = deployment["spec"]["template"]["spec"]["containers"]
    return operator


# --- one source -----------------------------------------------------------------------------

@pytest.mark.parametrize("copy", ["charts/colonies-operator/crds/colonyexecutor.yaml",
                                  "deploy/crds/colonyexecutor.yaml"])
def test_every_copy_of_the_crd_is_the_top_level_crd_byte_for_byte(copy):
    assert (ROOT / copy).read_bytes() == CRD.read_bytes(), f"{copy} drifted: cp {CRD.relative_to(ROOT)} {copy}"


def test_the_chart_the_manifests_and_the_dockerfile_carry_the_package_version():
    version = colonies_operator.__version__
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == version
    assert re.search(rf"^ARG VERSION={re.escape(version)}$", (ROOT / "Dockerfile").read_text(), re.M)
    deployment = yaml.safe_load((DEPLOY / "deployment.yaml").read_text())
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"].endswith(f":{version}")
    assert deployment["metadata"]["labels"]["app.kubernetes.io/version"] == version


def test_deploy_holds_the_same_objects_as_the_charts_defaults():
    rendered = subprocess.run([str(binary("kubectl")), "kustomize", str(DEPLOY)], capture_output=True, text=True,
                              timeout=60, check=True).stdout
    manifests = {(o["kind"], o["metadata"]["name"]): o for o in yaml.safe_load_all(rendered) if o}
    assert manifests.pop(("Namespace", "colonies-operator"))
    assert manifests.pop(("CustomResourceDefinition", "colonyexecutors.colonyos.io")) == yaml.safe_load(CRD.read_text())
    chart = {(o["kind"], o["metadata"]["name"]): o for o in render(hooks=False)}
    for obj in chart.values():
        for label in HELM_ONLY_LABELS:
            obj["metadata"]["labels"].pop(label)
    assert sorted(manifests) == sorted(chart)
    for key, obj in chart.items():
        assert manifests[key] == obj, f"deploy/ and the chart differ in {key}"


# --- the chart ------------------------------------------------------------------------------

def test_helm_lint_is_clean():
    result = helm("lint", "--strict", str(CHART))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout, result.stdout


def test_the_default_chart_renders_a_restricted_single_replica_deployment_with_probes_and_no_keys():
    objects = render("colonies.host=colonies.example.com", "colonies.colonyName=dev")
    assert {o["kind"] for o in objects} == {"ServiceAccount", "Role", "RoleBinding", "Service", "Deployment", "Pod"}
    [deployment] = by_kind(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    # leader election: an update is a handover from the old pod to the new standby
    assert deployment["spec"]["strategy"] == {"type": "RollingUpdate",
                                              "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    assert "affinity" not in deployment["spec"]["template"]["spec"] and not by_kind(objects, "PodDisruptionBudget")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    operator = container(objects)
    assert operator["securityContext"]["allowPrivilegeEscalation"] is False
    assert operator["securityContext"]["readOnlyRootFilesystem"] is True
    assert operator["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    for probe in ("livenessProbe", "readinessProbe"):
        assert operator[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert {p["name"]: p["containerPort"] for p in operator["ports"]} == {"health": 8080, "metrics": 9090}
    assert operator["resources"]["requests"] and operator["resources"]["limits"]
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in operator["env"]}
    assert env == {"COLONIES_SERVER_HOST": "colonies.example.com", "COLONIES_SERVER_PORT": "50080",
                   "COLONIES_TLS": "false", "COLONIES_COLONY_NAME": "dev",
                   "POD_NAMESPACE": {"fieldRef": {"fieldPath": "metadata.namespace"}},
                   "POD_NAME": {"fieldRef": {"fieldPath": "metadata.name"}},
                   "COLONIES_OPERATOR_LEADER_ELECTION": "true", "COLONIES_OPERATOR_LEASE_NAME": "colonies-operator-leader",
                   "COLONIES_OPERATOR_LEASE_SECONDS": "10", "COLONIES_OPERATOR_LEASE_RENEW_DEADLINE_SECONDS": "7",
                   "COLONIES_OPERATOR_LEASE_RETRY_SECONDS": "2",
                   # the CFS steps of Jobs run from the operator's own image
                   "COLONIES_OPERATOR_IMAGE": operator["image"]}
    [service] = by_kind(objects, "Service")
    assert {p["name"]: p["port"] for p in service["spec"]["ports"]} == {"health": 8080, "metrics": 9090}


def test_the_deployments_arguments_are_ones_the_cli_accepts():
    for sets in ((), ("rbac.clusterWide=true", "metrics.port=9191", "logLevel=DEBUG")):
        args = cli._parser().parse_args(container(render(*sets))["args"])
        assert args.command == "run"
        assert args.liveness == "http://0.0.0.0:8080/healthz"
    assert args.all_namespaces is True and args.metrics_port == 9191 and args.log_level == "DEBUG"


def roles(objects: list[dict[str, Any]], kind: str = "Role") -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in by_kind(objects, kind)}


def test_the_role_grants_exactly_the_permissions_the_operator_uses():
    objects = render()
    role = roles(objects)["colonies-operator"]
    assert granted(role["rules"]) == set(checks.PERMISSIONS)
    binding = roles(objects, "RoleBinding")["colonies-operator"]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "colonies-operator"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "colonies-operator",
                                    "namespace": "colonies-operator"}]
    secrets = {p.verb for p in granted(role["rules"]) if p.resource == "secrets"}
    assert secrets == {"get"}  # never list or watch (no enumerating Secrets), never create (no minting tokens)


def test_the_lease_role_grants_exactly_the_leader_elections_permissions_on_its_lease_in_the_release_namespace():
    objects = render()
    role = roles(objects)["colonies-operator-leader-election"]
    assert role["metadata"]["namespace"] == "colonies-operator"
    assert granted(role["rules"]) == set(checks.LEASE_PERMISSIONS)
    # what can be narrowed by name is: get and update of the one Lease
    assert [r.get("resourceNames") for r in role["rules"] if set(r["verbs"]) & {"get", "update"}] == [
        ["colonies-operator-leader"]]
    binding = roles(objects, "RoleBinding")["colonies-operator-leader-election"]
    assert binding["roleRef"]["name"] == "colonies-operator-leader-election"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "colonies-operator",
                                    "namespace": "colonies-operator"}]
    assert "colonies-operator-leader-election" not in roles(render("leaderElection.enabled=false"))


def test_cluster_wide_rbac_is_a_cluster_role_and_the_operator_serves_all_namespaces():
    objects = render("rbac.clusterWide=true")
    assert set(roles(objects)) == set(roles(objects, "RoleBinding")) == {"colonies-operator-leader-election"}
    [role], [binding] = by_kind(objects, "ClusterRole"), by_kind(objects, "ClusterRoleBinding")
    assert granted(role["rules"]) == set(checks.PERMISSIONS)
    assert binding["subjects"][0]["namespace"] == "colonies-operator"
    assert "--all-namespaces" in container(objects)["args"]


def test_watch_namespaces_get_a_role_each_and_reach_the_operator_as_its_namespaces():
    objects = render("watchNamespaces={team-a,team-b}", "leaderElection.enabled=false")
    assert sorted(o["metadata"]["namespace"] for o in by_kind(objects, "Role")) == ["team-a", "team-b"]
    bindings = by_kind(objects, "RoleBinding")
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    assert all(b["subjects"][0]["namespace"] == "colonies-operator" for b in bindings)
    env = {e["name"]: e.get("value") for e in container(objects)["env"]}
    assert env["COLONIES_OPERATOR_NAMESPACES"] == "team-a,team-b"


def test_the_helm_test_pod_runs_where_the_operator_may_run():
    objects = render("nodeSelector.pool=ops", "tolerations[0].key=ops", "tolerations[0].operator=Exists")
    [pod], [deployment] = by_kind(objects, "Pod"), by_kind(objects, "Deployment")
    operator = deployment["spec"]["template"]["spec"]
    assert pod["spec"]["nodeSelector"] == operator["nodeSelector"] == {"pool": "ops"}
    assert pod["spec"]["tolerations"] == operator["tolerations"] == [{"key": "ops", "operator": "Exists"}]


def test_the_service_monitor_is_off_by_default_and_scrapes_the_metrics_port_when_on():
    assert not by_kind(render(), "ServiceMonitor")
    [monitor] = by_kind(render("metrics.serviceMonitor.enabled=true", "metrics.serviceMonitor.labels.release=prom"),
                        "ServiceMonitor")
    assert monitor["spec"]["endpoints"] == [{"port": "metrics", "path": "/metrics", "interval": "30s"}]
    assert monitor["metadata"]["labels"]["release"] == "prom"


def test_the_helm_test_pod_asks_the_health_endpoint_through_the_service_and_is_not_behind_it():
    objects = render()
    [pod] = by_kind(objects, "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    [test] = pod["spec"]["containers"]
    assert test["image"] == "busybox:1.36"
    assert test["command"][:2] == ["sh", "-c"]
    # the Service's variables first (a cluster without DNS), its DNS name otherwise
    assert test["command"][-1].startswith("exec timeout 10 wget -q -O- ")
    assert test["command"][-1].endswith('"http://${COLONIES_OPERATOR_SERVICE_HOST:-colonies-operator.colonies-operator'
                                        '.svc}:${COLONIES_OPERATOR_SERVICE_PORT_HEALTH:-8080}/healthz"')
    assert "nodeSelector" not in pod["spec"]
    [service] = by_kind(objects, "Service")
    selector = service["spec"]["selector"].items()
    assert not selector <= pod["metadata"]["labels"].items()


@pytest.mark.parametrize("value, message", [
    ("replicaCount=two", "at '/replicaCount': got string, want integer"),
    ("replicaCount=6", "at '/replicaCount': maximum: got 6, want 5"),
    ("leaderElection.enabled=yes", "at '/leaderElection/enabled': got string, want boolean"),
    ("leaderElection.leaseName=Leader_1", "at '/leaderElection/leaseName'"),
    ("leaderElection.retryPeriodSeconds=0", "at '/leaderElection/retryPeriodSeconds': minimum: got 0, want 1"),
    ("replicaCont=1", "additional properties 'replicaCont' not allowed"),
    ("image.pullPolicy=Sometimes", "at '/image/pullPolicy': value must be one of"),
    ("colonies.port=http", "at '/colonies/port': got string, want integer"),
    ("colonies.tls=maybe", "at '/colonies/tls': got string, want boolean"),
    ("logLevel=TRACE", "at '/logLevel': value must be one of 'DEBUG', 'INFO', 'WARNING', 'ERROR'"),
    ("watchNamespaces={Team_A}", "at '/watchNamespaces/0'"),
])
def test_the_values_schema_rejects_bad_values_naming_the_value(value, message):
    error = render_error(value)
    assert "values don't meet the specifications of the schema" in error
    assert message in error


def test_standbys_get_a_disruption_budget_of_one_and_are_spread_over_nodes_unless_affinity_is_given():
    objects = render("replicaCount=3")
    [deployment] = by_kind(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    selector = {"app.kubernetes.io/name": "colonies-operator", "app.kubernetes.io/instance": "colonies-operator"}
    [budget] = by_kind(objects, "PodDisruptionBudget")
    assert budget["spec"] == {"maxUnavailable": 1, "selector": {"matchLabels": selector}}
    assert deployment["spec"]["template"]["spec"]["affinity"] == {"podAntiAffinity": {
        "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "podAffinityTerm": {
            "topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": selector}}}]}}
    [own] = by_kind(render("replicaCount=2", "affinity.nodeAffinity.x=y"), "Deployment")
    assert own["spec"]["template"]["spec"]["affinity"] == {"nodeAffinity": {"x": "y"}}


def test_without_leader_election_one_replica_is_recreated_and_more_are_refused_with_a_reason():
    objects = render("leaderElection.enabled=false")
    [deployment] = by_kind(objects, "Deployment")
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert not {e["name"] for e in container(objects)["env"]} & {"POD_NAME", "COLONIES_OPERATOR_LEADER_ELECTION"}
    error = render_error("replicaCount=2", "leaderElection.enabled=false")
    assert "replicaCount above 1 needs leaderElection.enabled" in error


def test_lease_timings_where_a_leader_could_outlive_its_lease_are_refused_with_a_reason():
    error = render_error("leaderElection.renewDeadlineSeconds=10")
    assert "need retryPeriodSeconds < renewDeadlineSeconds < leaseDurationSeconds" in error


def test_the_charts_lease_settings_are_ones_the_operator_accepts():
    env = {e["name"]: e["value"] for e in container(render("leaderElection.leaseDurationSeconds=20",
                                                           "leaderElection.leaseName=ops-leader"))["env"]
           if "value" in e}
    lease = leadership.LeaseSettings.from_env(env, "colonies-operator")
    assert (lease.namespace, lease.name, lease.lease_seconds, lease.renew_deadline_seconds, lease.retry_seconds) == (
        "colonies-operator", "ops-leader", 20, 7, 2)
    assert cfg.OperatorSettings.from_env(env).leader_election is True


def test_cluster_wide_rbac_and_watch_namespaces_together_are_refused_with_a_reason():
    error = render_error("rbac.clusterWide=true", "watchNamespaces={a}")
    assert "set either rbac.clusterWide (every namespace) or watchNamespaces (these namespaces), not both" in error


def test_every_value_in_values_yaml_is_documented():
    """Each key has a comment right above it, or follows a documented sibling (a comment may
    document a group of keys); the resource quantities under `resources` explain themselves."""
    documented: dict[int, bool] = {}  # indent → whether the last key at that indent was documented
    previous = ""
    undocumented = []
    in_resources = False
    for line in (CHART / "values.yaml").read_text().splitlines():
        key = re.match(r"^( *)([A-Za-z][\w.-]*):", line)
        if key:
            indent = len(key.group(1))
            in_resources = (indent > 0 and in_resources) or key.group(2) == "resources" and indent == 0
            ok = previous.lstrip().startswith("#") or (
                bool(re.match(rf"^ {{{indent}}}[A-Za-z]", previous)) and documented.get(indent, False))
            documented[indent] = ok
            if not ok and not (in_resources and indent > 0):
                undocumented.append(key.group(2))
        if line.strip():
            previous = line
    assert undocumented == []


def test_the_schema_rejects_unknown_keys_at_the_top_level():
    schema = yaml.safe_load((CHART / "values.schema.json").read_text())
    assert schema["additionalProperties"] is False
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert set(values) <= set(schema["properties"])


def test_no_two_test_modules_share_a_name():
    """tests/unit and tests/integration are not packages: pytest imports their modules by
    basename, and a second module of the same name stops the collection of the whole suite."""
    names = [p.name for p in (ROOT / "tests").rglob("test_*.py")]
    assert sorted({n for n in names if names.count(n) > 1}) == []
