"""`colonies-operator check`: the checks that need no cluster and no server say clearly what
is wrong (the others run against the real stack in tests/integration/test_install.py)."""

from __future__ import annotations

from colonies_operator import checks

NO_FLAGS = checks.Scope()


def test_settings_name_every_malformed_variable_at_once():
    env = {"COLONIES_SERVER_PORT": "http", "COLONIES_TLS": "ture", "COLONIES_OPERATOR_METRICS_PORT": "-1"}
    result, settings = checks.check_settings(env, checks.Scope(namespaces=("jobs",)))
    assert settings is None
    assert str(result) == ("FAIL  settings: COLONIES_SERVER_PORT='http' is not a port number (1-65535); "
                           "COLONIES_OPERATOR_METRICS_PORT='-1' is not a port number (0-65535); "
                           "COLONIES_TLS='ture' is not a boolean (true or false)")


def test_settings_without_a_namespace_outside_a_pod_say_how_to_name_one():
    result, _ = checks.check_settings({}, NO_FLAGS)
    assert result.failed
    assert "no namespace to serve: pass --namespace NS or --all-namespaces" in result.detail


def test_settings_fall_back_to_the_pods_own_namespace_and_name_the_default_server_and_colony():
    env = {"COLONIES_SERVER_HOST": "colonies.example.com", "COLONIES_SERVER_PORT": "443", "COLONIES_TLS": "true",
           "COLONIES_COLONY_NAME": "dev"}
    result, settings = checks.check_settings(env, checks.Scope(own_namespace="colonies"))
    assert settings is not None and settings.namespaces == ("colonies",)
    assert str(result) == ("OK    settings: serving namespace(s) colonies; default Colonies server "
                           "https://colonies.example.com:443; default colony dev")


def test_settings_without_a_default_server_say_each_colony_executor_must_name_one():
    result, settings = checks.check_settings({}, checks.Scope(all_namespaces=True))
    assert settings is not None and settings.all_namespaces
    assert "serving all namespaces" in result.detail
    assert "default Colonies server none (each ColonyExecutor must set spec.server.host)" in result.detail


async def test_the_colonies_check_is_skipped_without_a_default_server():
    _, settings = checks.check_settings({}, checks.Scope(namespaces=("jobs",)))
    result = await checks.check_colonies(settings)
    assert result.outcome == "SKIP" and not result.failed


async def test_a_missing_kubeconfig_is_named():
    result, kube = await checks.check_kubernetes({}, "/nonexistent/kubeconfig")
    assert kube is None
    assert str(result) == "FAIL  kubernetes: the kubeconfig /nonexistent/kubeconfig does not exist"


def test_permissions_read_as_rbac_names_them():
    assert [str(p) for p in checks.PERMISSIONS if p.resource != "jobs"] == [
        "list pods", "watch pods", "get pods/log", "create events", "list events", "get secrets", "create configmaps",
        "list colonyexecutors.colonyos.io", "watch colonyexecutors.colonyos.io",
        "patch colonyexecutors.colonyos.io", "patch colonyexecutors/status.colonyos.io",
    ]


def test_a_malformed_leader_election_switch_is_named():
    result, _ = checks.check_settings({"COLONIES_OPERATOR_LEADER_ELECTION": "maybe"}, checks.Scope(namespaces=("a",)))
    assert str(result) == "FAIL  settings: COLONIES_OPERATOR_LEADER_ELECTION='maybe' is not a boolean (true or false)"


async def test_lease_settings_a_leader_could_outlive_are_named_before_any_permission_is_asked():
    env = {"COLONIES_OPERATOR_LEASE_SECONDS": "5"}  # not above the renew deadline (7 s)
    result = await checks.check_lease_permissions(None, env, checks.Scope(own_namespace="ops"))
    assert result.failed and "COLONIES_OPERATOR_LEASE_SECONDS=5" in result.detail
    result = await checks.check_lease_permissions(None, {"COLONIES_OPERATOR_LEASE_RETRY_SECONDS": "soon"},
                                                  checks.Scope(own_namespace="ops"))
    assert result.detail == "COLONIES_OPERATOR_LEASE_RETRY_SECONDS='soon' is not a number of seconds"


def test_the_leases_permissions_read_as_rbac_names_them():
    assert [str(p) for p in checks.LEASE_PERMISSIONS] == [
        "get leases.coordination.k8s.io", "create leases.coordination.k8s.io", "update leases.coordination.k8s.io"]
