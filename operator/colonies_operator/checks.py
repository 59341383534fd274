"""`colonies-operator check`: can the operator run here, with these settings?

Checks, in order: the settings (flags and environment) parse and name something to serve;
the Kubernetes apiserver answers with these credentials; those credentials hold every
permission the operator uses, in each namespace it serves (one SelfSubjectAccessReview per
permission: what `kubectl auth can-i` asks); and, when COLONIES_SERVER_HOST is set, the
Colonies server answers (unsigned `getserverinfomsg`). Each check prints one line, OK, FAIL
or SKIP, with the reason and what to do about it; any FAIL makes the exit code 1.

`PERMISSIONS` is what the operator does with the Kubernetes API, as RBAC names it: the Helm
chart's Role and deploy/ grant exactly these (tests/unit/test_packaging.py), and those are
exactly what the operator asked of the apiserver in the whole integration suite, read from its
audit log (tests/integration/test_zz_rbac.py).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from kubernetes_asyncio import client as kube_client
from kubernetes_asyncio import config as kube_config
from kubernetes_asyncio.client.exceptions import ApiException

from colonies_operator import config as cfg, leadership
from colonies_operator.colonies import errors
from colonies_operator.colonies.client import Connection, RetryPolicy, ServerAddress
from colonies_operator.runtime.kube import KubeApi

KUBE_TIMEOUT = 15.0  # seconds for each Kubernetes check; a healthy apiserver answers in milliseconds
COLONIES_RETRY = RetryPolicy(attempts=2, deadline=10.0)
BOOLEANS = {"1", "true", "yes", "on", "0", "false", "no", "off", ""}
PORTS = {"COLONIES_SERVER_PORT": 1, "COLONIES_OPERATOR_METRICS_PORT": 0}  # the lowest valid value (0: off)


@dataclass(frozen=True)
class Permission:
    """One RBAC permission: a verb on a resource (and subresource) of an API group."""

    verb: str
    resource: str
    group: str = ""
    subresource: str = ""

    def __str__(self) -> str:
        resource = f"{self.resource}/{self.subresource}" if self.subresource else self.resource
        return f"{self.verb} {resource}" + (f".{self.group}" if self.group else "")


# Every Kubernetes request the operator makes, as RBAC names it: runtime/kube.py (Jobs, the
# label-selected Job and Pod watches, logs, Events, Secrets, status) and kopf (the
# ColonyExecutor list and watch; patches for its finalizer and annotations; Events). Neither
# reads a single Job or ColonyExecutor: no `get` of either.
PERMISSIONS: tuple[Permission, ...] = (
    *(Permission(verb, "jobs", "batch") for verb in ("create", "list", "watch", "patch", "delete")),
    Permission("list", "pods"),
    Permission("watch", "pods"),
    Permission("get", "pods", subresource="log"),
    Permission("create", "events"),
    # the Job controller's FailedCreate Events of a Job whose pods are refused (quota, admission)
    Permission("list", "events"),
    # Secrets: read the colony key, an executor key and the Colonies server's CA bundle that
    # the ColonyExecutors name. Never create: an executor key nobody names is derived.
    Permission("get", "secrets"),
    # the ConfigMap that carries a process's workflow input (/colonies/in.json), owned by its Job
    Permission("create", "configmaps"),
    *(Permission(verb, "colonyexecutors", "colonyos.io") for verb in ("list", "watch", "patch")),
    Permission("patch", "colonyexecutors", "colonyos.io", subresource="status"),
)

# The leader election's Lease (leadership.py), in the operator's own namespace: its own Role.
LEASE_PERMISSIONS: tuple[Permission, ...] = tuple(
    Permission(verb, "leases", "coordination.k8s.io") for verb in ("get", "create", "update"))


@dataclass(frozen=True)
class Result:
    check: str
    outcome: str  # OK, FAIL or SKIP
    detail: str

    @property
    def failed(self) -> bool:
        return self.outcome == "FAIL"

    def __str__(self) -> str:
        return f"{self.outcome:<4}  {self.check}: {self.detail}"


@dataclass(frozen=True)
class Scope:
    """What the command line asked for; the settings check resolves it against the environment."""

    namespaces: tuple[str, ...] = ()
    all_namespaces: bool | None = None
    kubeconfig: str | None = None
    own_namespace: str | None = None  # the pod's namespace, when running in one


def check_settings(env: Mapping[str, str], scope: Scope) -> tuple[Result, cfg.OperatorSettings | None]:
    problems = []
    for name, lowest in PORTS.items():
        port = env.get(name) or ""
        if port and not (port.isdigit() and lowest <= int(port) <= 65535):
            problems.append(f"{name}={port!r} is not a port number ({lowest}-65535)")
    for name in ("COLONIES_TLS", "COLONIES_OPERATOR_ALL_NAMESPACES", "COLONIES_OPERATOR_LEADER_ELECTION"):
        if (env.get(name) or "").strip().lower() not in BOOLEANS:
            problems.append(f"{name}={env[name]!r} is not a boolean (true or false)")
    if problems:
        return Result("settings", "FAIL", "; ".join(problems)), None
    settings = cfg.OperatorSettings.from_env(env, namespaces=scope.namespaces or None,
                                             all_namespaces=scope.all_namespaces)
    if not settings.namespaces and not settings.all_namespaces and scope.own_namespace:
        settings = cfg.OperatorSettings.from_env(env, namespaces=(scope.own_namespace,))
    liveness = urlsplit(settings.liveness_endpoint)
    if settings.liveness_endpoint and (liveness.scheme != "http" or not liveness.hostname):
        problems.append(f"COLONIES_OPERATOR_LIVENESS={settings.liveness_endpoint!r} is not an http:// URL")
    if not settings.namespaces and not settings.all_namespaces:
        problems.append("no namespace to serve: pass --namespace NS or --all-namespaces, or set "
                        "COLONIES_OPERATOR_NAMESPACES (in a pod, the default is the pod's own namespace)")
    if problems:
        return Result("settings", "FAIL", "; ".join(problems)), None
    scope_text = "all namespaces" if settings.all_namespaces else f"namespace(s) {', '.join(settings.namespaces)}"
    server = (ServerAddress(settings.server_host, settings.server_port, settings.server_tls).base_url
              if settings.server_host else "none (each ColonyExecutor must set spec.server.host)")
    colony = settings.colony_name or "none (each ColonyExecutor must set spec.colonyName)"
    return Result("settings", "OK", f"serving {scope_text}; default Colonies server {server}; "
                                    f"default colony {colony}"), settings


async def check_kubernetes(env: Mapping[str, str], kubeconfig: str | None) -> tuple[Result, KubeApi | None]:
    """Connect and ask the apiserver its version; returns the open KubeApi when it answered."""
    files = [kubeconfig] if kubeconfig else [f for f in (env.get("KUBECONFIG") or "").split(os.pathsep) if f]
    missing = [f for f in files if not os.path.isfile(f)]
    if missing:
        return Result("kubernetes", "FAIL", f"the kubeconfig {', '.join(missing)} does not exist"), None
    try:
        kube = await KubeApi.connect(kubeconfig)
    except (kube_config.ConfigException, OSError) as exc:
        return Result("kubernetes", "FAIL", f"no credentials: not in a pod, and no usable kubeconfig "
                                            f"(set KUBECONFIG or --kubeconfig): {exc}"), None
    host = kube.api_client.configuration.host
    try:
        version = await asyncio.wait_for(kube_client.VersionApi(kube.api_client).get_code(), KUBE_TIMEOUT)
    except ApiException as exc:
        await kube.close()
        hint = " (the credentials were refused)" if exc.status == 401 else ""
        return Result("kubernetes", "FAIL", f"the apiserver {host} answered HTTP {exc.status} {exc.reason}{hint}"), None
    except Exception as exc:  # aiohttp's connection errors, TLS, DNS, the timeout
        await kube.close()
        return Result("kubernetes", "FAIL", f"cannot reach the apiserver {host}: {type(exc).__name__}: {exc}"), None
    return Result("kubernetes", "OK", f"the apiserver {host} answers (Kubernetes {version.git_version})"), kube


async def check_permissions(kube: KubeApi, namespace: str | None,
                            permissions: tuple[Permission, ...] = PERMISSIONS, what: str = "permissions") -> Result:
    """Ask the apiserver, once per permission, whether these credentials hold it in `namespace`
    (None: cluster-wide, for --all-namespaces)."""
    api = kube_client.AuthorizationV1Api(kube.api_client)

    async def allowed(permission: Permission) -> bool:
        attributes = {"namespace": namespace or "", "verb": permission.verb, "group": permission.group,
                      "resource": permission.resource, "subresource": permission.subresource}
        review = await api.create_self_subject_access_review(
            {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
             "spec": {"resourceAttributes": attributes}})
        return bool(review.status.allowed)

    where = f"{what} in " + (f"namespace {namespace}" if namespace else "all namespaces")
    try:
        answers = await asyncio.wait_for(asyncio.gather(*(allowed(p) for p in permissions)), KUBE_TIMEOUT)
    except Exception as exc:  # the review itself failed: say so rather than guess
        return Result(where, "FAIL", f"cannot ask the apiserver: {type(exc).__name__}: {exc}")
    missing = [str(p) for p, ok in zip(permissions, answers) if not ok]
    if missing:
        return Result(where, "FAIL", f"missing {', '.join(missing)}: grant the Roles of the Helm chart (or deploy/) there")
    return Result(where, "OK", f"all {len(permissions)} the operator uses are granted")


async def check_lease_permissions(kube: KubeApi, env: Mapping[str, str], scope: Scope) -> Result:
    """With leader election: its settings, and the Lease's permissions in its namespace."""
    try:
        lease = leadership.LeaseSettings.from_env(env, scope.own_namespace)
    except ValueError as exc:
        return Result("leader election", "FAIL", str(exc))
    return await check_permissions(kube, lease.namespace, LEASE_PERMISSIONS, "leader election's Lease permissions")


async def check_colonies(settings: cfg.OperatorSettings) -> Result:
    if not settings.server_host:
        return Result("colonies", "SKIP", "COLONIES_SERVER_HOST is not set; each ColonyExecutor names its server")
    address = ServerAddress(settings.server_host, settings.server_port, settings.server_tls)
    try:
        async with Connection(address, retry=COLONIES_RETRY, timeout=10.0) as connection:
            info = await connection.server_info()
    except errors.ColoniesError as exc:
        return Result("colonies", "FAIL", str(exc))
    return Result("colonies", "OK", f"the Colonies server {address.base_url} answers "
                                    f"(version {info.get('buildversion', '?')}, built {info.get('buildtime', '?')})")


async def run_checks(env: Mapping[str, str], scope: Scope) -> list[Result]:
    settings_result, settings = check_settings(env, scope)
    results = [settings_result]
    kube_result, kube = await check_kubernetes(env, scope.kubeconfig)
    results.append(kube_result)
    if kube is not None:
        try:
            if settings is not None:
                namespaces: Sequence[str | None] = [None] if settings.all_namespaces else settings.namespaces
                results.extend([await check_permissions(kube, ns) for ns in namespaces])
                if settings.leader_election:
                    results.append(await check_lease_permissions(kube, env, scope))
        finally:
            await kube.close()
    if settings is not None:
        results.append(await check_colonies(settings))
    return results


def main(env: Mapping[str, str], scope: Scope) -> int:
    results = asyncio.run(run_checks(env, scope))
    for result in results:
        print(result, flush=True)
    return 1 if any(r.failed for r in results) else 0
