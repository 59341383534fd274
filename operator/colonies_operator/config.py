"""Configuration: the operator's own settings, and each ColonyExecutor's spec parsed into a
frozen `ExecutorConfig`.

Parsing happens once, here; the runtime receives plain values and never looks anything
up. A spec that cannot be used raises `ConfigError(field, message)`, which the kopf edge
turns into a Ready=False condition and a Warning Event instead of a crash loop.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from colonies_operator.colonies.client import ServerAddress
from colonies_operator.jobs import builder, io as job_io, kueue, quantity, spec as funcspec, storage as job_storage
from colonies_operator.jobs.podtemplate import TemplateError
from colonies_operator.jobs.spec import SpecPolicy
from colonies_operator.runtime import demand
from colonies_operator.runtime.capacity import Resources


class ConfigError(ValueError):
    def __init__(self, field_: str, message: str) -> None:
        super().__init__(f"spec.{field_}: {message}")
        self.field = field_


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class OperatorSettings:
    """Operator-wide settings: flags, else environment, else these defaults."""

    namespaces: tuple[str, ...] = ()          # empty: the namespace the operator runs in
    all_namespaces: bool = False
    liveness_endpoint: str = "http://0.0.0.0:8080/healthz"
    metrics_port: int = 9090                 # /metrics; 0 turns it off
    standalone: bool = True                  # no kopf peering: one replica serves (leader_election picks it)
    leader_election: bool = False            # serve only while holding a Lease (leadership.py); else serve at once
    # Defaults for what a ColonyExecutor leaves out, named as in ColonyOS' own tools.
    server_host: str = ""
    server_port: int = 50080
    server_tls: bool = False
    colony_name: str = ""
    image: str = ""  # the operator's own image: the CFS steps of Jobs run from it

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ, **overrides: Any) -> OperatorSettings:
        namespaces = tuple(n for n in (env.get("COLONIES_OPERATOR_NAMESPACES") or "").split(",") if n.strip())
        values: dict[str, Any] = {
            "namespaces": namespaces,
            "all_namespaces": _truthy(env.get("COLONIES_OPERATOR_ALL_NAMESPACES")),
            "leader_election": _truthy(env.get("COLONIES_OPERATOR_LEADER_ELECTION")),
            "liveness_endpoint": env.get("COLONIES_OPERATOR_LIVENESS", cls.liveness_endpoint),
            "metrics_port": int(env.get("COLONIES_OPERATOR_METRICS_PORT") or cls.metrics_port),
            "server_host": env.get("COLONIES_SERVER_HOST", ""),
            "server_port": int(env.get("COLONIES_SERVER_PORT") or 50080),
            "server_tls": _truthy(env.get("COLONIES_TLS")),
            "colony_name": env.get("COLONIES_COLONY_NAME", ""),
            "image": env.get("COLONIES_OPERATOR_IMAGE", ""),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


@dataclass(frozen=True)
class SecretRef:
    name: str
    key: str


@dataclass(frozen=True)
class LogSettings:
    batch_bytes: int = 65536       # one addlogmsg carries at most this many bytes
    flush_seconds: float = 1.0     # and waits at most this long for more lines
    max_bytes: int = 100 * 2**20   # per process; then one truncation line


@dataclass(frozen=True)
class ExecutorConfig:
    namespace: str
    resource_name: str
    server: ServerAddress
    colony_name: str
    executor_name: str
    executor_type: str
    colony_key: SecretRef
    executor_key: SecretRef | None         # None: generated into a Secret the operator owns
    budget: Resources
    policy: SpecPolicy
    gpu_resource_name: str = "nvidia.com/gpu"
    gpu_node_label: str = "accelerator"
    gpu_products: Mapping[str, str] = field(default_factory=dict)
    gpu_memory_label: str = "nvidia.com/gpu.memory"
    ttl_seconds_after_finished: int | None = 300
    job_template: Mapping[str, Any] = field(default_factory=dict)
    security_profile: str = ""  # "" or builder.RESTRICTED
    logs: LogSettings = LogSettings()
    pending_grace_seconds: float = 300.0
    elastic: int = 0                        # capacity.elastic: processes that may wait for a node at once; 0: off
    elastic_pending_seconds: float = 1800.0  # with elastic: how long a pod may stay unschedulable
    waiting_poll_seconds: float = 10.0      # the WAITING-processes gauge's poll; 0: off
    assign_timeout_seconds: int = 20
    heartbeat_seconds: float = 60.0        # an assign at least this often, even when paused or full
    paused: bool = False
    location_name: str = ""
    capabilities: Mapping[str, Any] = field(default_factory=dict)
    ca_secret: SecretRef | None = None
    storage: job_storage.StorageSettings | None = None  # CFS (spec.storage)
    output: job_io.OutputSettings | None = None  # /colonies/out.json (spec.output.file)
    profiles: Mapping[str, builder.Profile] = field(default_factory=dict)  # spec.profiles
    profile_budgets: Mapping[str, Resources] = field(default_factory=dict)  # profiles.<name>.capacity
    kueue: kueue.KueueSettings | None = None  # Kueue admits the Jobs (spec.kueue)

    @property
    def generated_key_secret(self) -> str:
        return f"{self.resource_name}-executor-key"

    def job_settings(self, executor_id: str) -> builder.JobSettings:
        return builder.JobSettings(
            namespace=self.namespace, executor_name=self.executor_name, executor_id=executor_id,
            colony_name=self.colony_name, gpu_resource_name=self.gpu_resource_name,
            gpu_node_label=self.gpu_node_label, ttl_seconds_after_finished=self.ttl_seconds_after_finished,
            job_template=self.job_template, security_profile=self.security_profile,
            resource_name=self.resource_name, storage=self.storage, output=self.output, kueue=self.kueue,
            profiles=self.profiles, gpu_products=self.gpu_products, gpu_memory_label=self.gpu_memory_label,
        )


def _quantity(spec: Mapping[str, Any], path: str, parse: Any, default: Any = None) -> int | None:
    section, _, key = path.rpartition(".")
    value = (spec.get(section) or {}).get(key, default) if section else spec.get(key, default)
    if value is None:
        return None
    try:
        return parse(value)
    except (quantity.QuantityError, ValueError) as exc:
        raise ConfigError(path, str(exc)) from None


def _secret_ref(value: Any, path: str, default_key: str) -> SecretRef | None:
    if value is None:
        return None
    if not isinstance(value, Mapping) or not value.get("name"):
        raise ConfigError(path, "must name a Secret: {name: <secret>, key: <key>}")
    return SecretRef(str(value["name"]), str(value.get("key") or default_key))


def _allowed_secrets(spec: Mapping[str, Any], own_keys: Mapping[str, str]) -> tuple[str, ...]:
    """`secrets.allowed`: the Secrets of the namespace that funcspecs may name. Whoever may
    submit to this executor can read them, so the Secrets holding the executor's own keys
    (`own_keys`: name → what holds it) are refused."""
    section = spec.get("secrets") or {}
    if not isinstance(section, Mapping):
        raise ConfigError("secrets", "must be an object: {allowed: [<Secret name>, ...]}")
    names = section.get("allowed") or []
    if not isinstance(names, list):
        raise ConfigError("secrets.allowed", f"must be a list of Secret names, got {names!r:.40}")
    for i, name in enumerate(names):
        if not funcspec.is_secret_name(name):
            raise ConfigError(f"secrets.allowed[{i}]", f"{name!r:.80} is not a valid Secret name: expected a DNS-1123 "
                                                      "subdomain (lowercase letters, digits, '-' and '.', starting "
                                                      f"and ending with a letter or digit, at most "
                                                      f"{funcspec.MAX_SECRET_NAME} characters)")
        if name in own_keys:
            raise ConfigError(f"secrets.allowed[{i}]", f"{name!r} holds {own_keys[name]}: every colony member "
                                                      "who may submit to this executor could read it")
    return tuple(names)


def _overlay(template: Mapping[str, Any]) -> dict[str, Any]:
    """The CRD's jobTemplate → the builder's overlay keys (the CRD spells a few differently)."""
    overlay = {k: v for k, v in template.items() if k in TEMPLATE_KEYS and not k.startswith(("runAs", "security"))}
    security = {key: template[key] for key in ("runAsNonRoot", "runAsUser", "runAsGroup")
                if template.get(key) is not None}
    if security:
        overlay["securityContext"] = security
    return overlay


PROFILE_ONLY_KEYS = ("limits", "capacity")  # a profile's own keys besides the jobTemplate's
EXECUTOR_WIDE_KEYS = ("ttlSecondsAfterFinished",)  # jobTemplate keys a profile cannot change
TEMPLATE_KEYS = ("labels", "annotations", "nodeSelector", "tolerations", "serviceAccountName", "imagePullSecrets",
                 "priorityClassName", "podTemplate", "runAsNonRoot", "runAsUser", "runAsGroup", "securityProfile")


def _pool(template: Mapping[str, Any], budget: Resources) -> Resources | None:
    """A profile's `capacity`: its own budget inside the executor's (left-out amounts: the
    executor's), or None without one."""
    given = template.get("capacity")
    if given is None:
        return None
    if not isinstance(given, Mapping):
        raise ConfigError("capacity", "must be an object: {cpu, memory, gpu, maxConcurrentJobs}")
    scoped = {"capacity": given}
    cpu = _quantity(scoped, "capacity.cpu", quantity.parse_cpu)
    memory = _quantity(scoped, "capacity.memory", quantity.parse_memory)
    return Resources(cpu_millis=budget.cpu_millis if cpu is None else cpu,
                     memory_bytes=budget.memory_bytes if memory is None else memory,
                     gpus=int(given.get("gpu", budget.gpus)), jobs=int(given.get("maxConcurrentJobs", budget.jobs)))


def _profile_policy(template: Mapping[str, Any], policy: SpecPolicy) -> SpecPolicy:
    """The executor's policy with a profile's `limits` over it."""
    limits = template.get("limits") or {}
    if not isinstance(limits, Mapping):
        raise ConfigError("limits", "must be an object: {cpu, memory, gpu, nodes, processesPerNode}")
    scoped = {"limits": limits}
    caps = {"max_cpu_millis": _quantity(scoped, "limits.cpu", quantity.parse_cpu),
            "max_memory_bytes": _quantity(scoped, "limits.memory", quantity.parse_memory),
            "max_gpus": int(limits["gpu"]) if limits.get("gpu") is not None else None,
            "max_nodes": int(limits["nodes"]) if limits.get("nodes") else None,
            "max_processes_per_node": int(limits["processesPerNode"]) if limits.get("processesPerNode") else None}
    return dataclasses.replace(policy, **{k: v for k, v in caps.items() if v is not None})


def _profiles(spec: Mapping[str, Any], base: Mapping[str, Any], policy: SpecPolicy, budget: Resources
              ) -> tuple[dict[str, builder.Profile], dict[str, SpecPolicy], dict[str, Resources]]:
    """spec.profiles → (name → Job overlay, name → policy, name → budget). A profile is a
    jobTemplate of its own whose left-out keys come from spec.jobTemplate, plus optional `limits`
    over spec.limits and an optional `capacity` of its own inside the executor's."""
    given = spec.get("profiles") or {}
    if not isinstance(given, Mapping):
        raise ConfigError("profiles", "must be an object: {<name>: <jobTemplate>}")
    overlays, policies, pools = {}, {}, {}
    for name, template in given.items():
        path = f"profiles.{name}"
        if not funcspec.is_label_value(name) or not name:
            raise ConfigError(path, f"{name!r} is not a valid profile name: up to 63 letters, digits, '-', '_' "
                                    "or '.' (it becomes a label value)")
        if not isinstance(template, Mapping):
            raise ConfigError(path, "must be an object: a jobTemplate, optionally with limits")
        for key in template:
            if key in EXECUTOR_WIDE_KEYS:
                raise ConfigError(f"{path}.{key}", "applies to every profile: set it in spec.jobTemplate")
            if key not in TEMPLATE_KEYS + PROFILE_ONLY_KEYS:
                raise ConfigError(f"{path}.{key}", f"is not supported (supported: "
                                                   f"{', '.join(TEMPLATE_KEYS + PROFILE_ONLY_KEYS)})")
        merged = {**base, **{k: v for k, v in template.items() if k not in PROFILE_ONLY_KEYS}}
        overlays[name] = builder.Profile(_overlay(merged), str(merged.get("securityProfile") or ""))
        try:
            policies[name] = _profile_policy(template, policy)
            pool = _pool(template, budget)
        except ConfigError as exc:  # named inside the profile
            raise ConfigError(f"{path}.{exc.field}", str(exc).split(": ", 1)[1]) from None
        if pool is not None:
            pools[name] = pool
    return overlays, policies, pools


def _gpu_products(gpu: Mapping[str, Any]) -> dict[str, str]:
    products = gpu.get("products") or {}
    if not isinstance(products, Mapping):
        raise ConfigError("gpu.products", "must map product names to node label values: {a100: NVIDIA-A100-SXM4-80GB}")
    for name, value in products.items():
        if not isinstance(value, str) or not funcspec.is_label_value(value) or not value:
            raise ConfigError(f"gpu.products.{name}", f"{value!r} is not a valid node label value")
    return dict(products)


def default_executor_name(namespace: str, name: str, uid: str) -> str:
    """Unique per resource, so per namespace and per cluster: two ColonyExecutors called `k8s`
    in two namespaces (or clusters) of one colony must not take each other's name."""
    return f"{namespace}-{name}-{uid.replace('-', '')[:8]}" if uid else f"{namespace}-{name}"


def _seconds(spec: Mapping[str, Any], key: str, default: float, low: float, high: float) -> float:
    value = spec.get(key)
    if value is None:
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(key, f"must be a number of seconds, got {value!r}") from None
    if not low <= number <= high:
        raise ConfigError(key, f"must be between {low:g} and {high:g} seconds, got {number:g}")
    return number


def _whole(section: Mapping[str, Any], path: str, default: int, low: int, high: int) -> int:
    value = section.get(path.rpartition(".")[2])
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
        raise ConfigError(path, f"must be a whole number, got {value!r:.40}")
    if not low <= value <= high:
        raise ConfigError(path, f"must be between {low} and {high}, got {int(value)}")
    return int(value)


def _waiting_poll(spec: Mapping[str, Any]) -> float:
    seconds = _seconds(spec, "waitingPollSeconds", 10, 0, 3600)
    if 0 < seconds < demand.MIN_POLL_SECONDS:
        raise ConfigError("waitingPollSeconds", f"must be 0 (off) or at least {demand.MIN_POLL_SECONDS:g} seconds, "
                                                f"got {seconds:g}")
    return seconds


def _helper_image(spec: Mapping[str, Any], settings: OperatorSettings, what: str) -> str:
    """The image of the helper containers of Jobs (CFS steps, the output sidecar): the
    operator's own, which has `colonies-operator cfs|output`."""
    image = str(spec.get("helperImage") or settings.image)
    if not image:
        raise ConfigError("helperImage", f"no image for {what}: set spec.helperImage or the operator's "
                                         "COLONIES_OPERATOR_IMAGE (the Helm chart sets it)")
    return image


def _output(spec: Mapping[str, Any], settings: OperatorSettings) -> job_io.OutputSettings | None:
    """spec.output → the out.json sidecar's settings, or None when out.json is not read."""
    given = spec.get("output") or {}
    if not isinstance(given, Mapping):
        raise ConfigError("output", "must be an object: {file: true, maxBytes: 1Mi}")
    if not given.get("file"):
        return None
    try:
        max_bytes = quantity.parse_memory(given.get("maxBytes", "1Mi"))
    except quantity.QuantityError as exc:
        raise ConfigError("output.maxBytes", str(exc)) from None
    if not 0 < max_bytes <= 64 * 2**20:
        raise ConfigError("output.maxBytes", f"must be between 1 byte and 64Mi, got {max_bytes} bytes")
    return job_io.OutputSettings(image=_helper_image(spec, settings, "the output sidecar"), max_bytes=max_bytes)


def _storage(spec: Mapping[str, Any], settings: OperatorSettings, server: ServerAddress, colony: str,
             executor_key: SecretRef | None, ca_secret: SecretRef | None) -> job_storage.StorageSettings | None:
    """spec.storage → the CFS settings of the executor's Jobs, or None without storage."""
    given = spec.get("storage")
    if not given:
        return None
    if not isinstance(given, Mapping):
        raise ConfigError("storage", "must be an object: {endpoint, bucket, credentialsSecretRef}")
    for key in ("endpoint", "bucket"):
        if not given.get(key):
            raise ConfigError(f"storage.{key}", "is required")
    credentials = given.get("credentialsSecretRef") or {}
    if not isinstance(credentials, Mapping) or not credentials.get("name"):
        raise ConfigError("storage.credentialsSecretRef", "must name the Secret holding the S3 keys: "
                                                          "{name: <secret>, accessKeyKey, secretKeyKey}")
    if executor_key is None:
        raise ConfigError("executorKeySecretRef", "is required with spec.storage: the Jobs' CFS steps sign with the "
                                                  "executor's key, which only a Secret may carry (create one with "
                                                  "the private key of `colonies security generate`)")
    image = _helper_image(spec, settings, "the CFS steps")
    size = given.get("volumeSize", "10Gi")
    try:
        quantity.parse_memory(size)
    except quantity.QuantityError as exc:
        raise ConfigError("storage.volumeSize", str(exc)) from None
    jobs = spec.get("server") or {}
    try:
        push_seconds = int(_seconds(given, "pushSeconds", 600, 10, 86400))
    except ConfigError as exc:
        raise ConfigError("storage.pushSeconds", str(exc).split(": ", 1)[1]) from None
    return job_storage.StorageSettings(
        image=image, endpoint=str(given["endpoint"]), bucket=str(given["bucket"]),
        keys_secret=str(credentials["name"]),
        access_key_field=str(credentials.get("accessKeyKey") or "accessKey"),
        secret_key_field=str(credentials.get("secretKeyKey") or "secretKey"),
        executor_key_secret=(executor_key.name, executor_key.key),
        server_host=str(jobs.get("jobHost") or server.host), server_port=int(jobs.get("jobPort") or server.port),
        server_tls=server.tls, server_ca_secret=(ca_secret.name, ca_secret.key) if ca_secret else None,
        colony_name=colony, region=str(given.get("region") or ""), tls=bool(given.get("tls", False)),
        skip_verify=bool(given.get("insecureSkipVerify", False)), volume_size=str(size),
        push_seconds=push_seconds,
    )


def executor_config(namespace: str, name: str, spec: Mapping[str, Any], settings: OperatorSettings,
                    uid: str = "") -> ExecutorConfig:
    """A ColonyExecutor's spec (with the CRD's defaults applied) → ExecutorConfig, or ConfigError."""
    server = spec.get("server") or {}
    host = server.get("host") or settings.server_host
    if not host:
        raise ConfigError("server.host", "no Colonies server: set spec.server.host or COLONIES_SERVER_HOST")
    colony = spec.get("colonyName") or settings.colony_name
    if not colony:
        raise ConfigError("colonyName", "no colony: set spec.colonyName or COLONIES_COLONY_NAME")
    colony_key = _secret_ref(spec.get("colonyKeySecretRef"), "colonyKeySecretRef", "colonyPrvKey")
    if colony_key is None:
        raise ConfigError("colonyKeySecretRef", "is required: the Secret holding the colony's private key")
    tls = bool(server.get("tls", settings.server_tls))
    verify: bool | str = not server.get("insecureSkipVerify", False)
    ca_secret = _secret_ref(server.get("caSecretRef"), "server.caSecretRef", "ca.crt")
    if ca_secret is not None and not tls:
        raise ConfigError("server.caSecretRef", "a CA verifies an https server: set server.tls: true")
    capacity = spec.get("capacity") or {}
    limits = spec.get("limits") or {}
    gpu = spec.get("gpu") or {}
    template = spec.get("jobTemplate") or {}
    logs = spec.get("logs") or {}
    budget = Resources(
        cpu_millis=_quantity(spec, "capacity.cpu", quantity.parse_cpu, "4") or 0,
        memory_bytes=_quantity(spec, "capacity.memory", quantity.parse_memory, "8Gi") or 0,
        gpus=int(capacity.get("gpu") or 0),
        jobs=int(capacity.get("maxConcurrentJobs") or 100),
    )
    executor_key = _secret_ref(spec.get("executorKeySecretRef"), "executorKeySecretRef", "executorPrvKey")
    own_keys = {f"{name}-executor-key": f"the executor's private key ({name}-executor-key, from an earlier version)",
                colony_key.name: "the colony's private key (colonyKeySecretRef)"}
    if executor_key is not None:
        own_keys[executor_key.name] = "the executor's private key (executorKeySecretRef)"
    credentials = (spec.get("storage") or {}).get("credentialsSecretRef") if isinstance(spec.get("storage"), Mapping) else None
    if isinstance(credentials, Mapping) and credentials.get("name"):
        own_keys[str(credentials["name"])] = "the S3 keys of the executor's storage (storage.credentialsSecretRef)"
    policy = SpecPolicy(
        allowed_images=tuple(str(p) for p in spec.get("allowedImages") or ()),
        max_cpu_millis=_quantity(spec, "limits.cpu", quantity.parse_cpu),
        max_memory_bytes=_quantity(spec, "limits.memory", quantity.parse_memory),
        max_gpus=int(limits["gpu"]) if limits.get("gpu") is not None else None,
        max_nodes=int(limits.get("nodes") or 16),
        max_processes_per_node=int(limits.get("processesPerNode") or 16),
        default_cpu_millis=_quantity(spec, "defaults.cpu", quantity.parse_cpu),
        default_memory_bytes=_quantity(spec, "defaults.memory", quantity.parse_memory),
        storage=bool(spec.get("storage")),
        allowed_secrets=_allowed_secrets(spec, own_keys),
    )
    security_profile = str(template.get("securityProfile") or "")
    profiles, profile_policies, profile_budgets = _profiles(spec, template, policy, budget)
    policy = dataclasses.replace(policy, profiles=profile_policies)
    try:
        builder.JobSettings(namespace=namespace, executor_name="x", executor_id="", colony_name=colony,
                            job_template=_overlay(template), security_profile=security_profile,
                            profiles=profiles)
    except TemplateError as exc:
        raise ConfigError(exc.field, exc.message) from None
    executor_name = spec.get("executorName") or default_executor_name(namespace, name, uid)
    address = ServerAddress(str(host), int(server.get("port") or settings.server_port), tls, verify)
    storage = _storage(spec, settings, address, str(colony), executor_key, ca_secret)
    # Colonies removes an executor it has not heard from for 600 s; an assign is the only way
    # to be heard, so both the long poll and the heartbeat stay well below that.
    assign_timeout = _seconds(spec, "assignTimeoutSeconds", 20, 1, 300)
    heartbeat = _seconds(spec, "heartbeatSeconds", 60, 1, 300)
    return ExecutorConfig(
        namespace=namespace, resource_name=name,
        server=address,
        colony_name=str(colony), executor_name=str(executor_name),
        executor_type=str(spec.get("executorType") or "container-executor"),
        colony_key=colony_key,
        executor_key=executor_key,
        budget=budget, policy=policy,
        gpu_resource_name=str(gpu.get("resourceName") or "nvidia.com/gpu"),
        gpu_node_label=str(gpu.get("nodeLabel") or "accelerator"),
        gpu_products=_gpu_products(gpu),
        gpu_memory_label=str(gpu.get("memoryLabel") or "nvidia.com/gpu.memory"),
        ttl_seconds_after_finished=template.get("ttlSecondsAfterFinished", 300),
        job_template=_overlay(template),
        security_profile=security_profile,
        logs=LogSettings(batch_bytes=int(logs.get("batchBytes") or 65536),
                         flush_seconds=float(logs.get("flushSeconds") or 1.0),
                         max_bytes=int(logs.get("maxBytes", 100 * 2**20))),
        pending_grace_seconds=float(spec.get("pendingGraceSeconds") or 300),
        elastic=_whole(capacity, "capacity.elastic", 0, 0, 10_000),
        elastic_pending_seconds=_whole(capacity, "capacity.elasticPendingSeconds", 1800, 1, 7 * 86400),
        waiting_poll_seconds=_waiting_poll(spec),
        assign_timeout_seconds=int(assign_timeout),
        heartbeat_seconds=heartbeat,
        paused=bool(spec.get("paused", False)),
        location_name=str(spec.get("locationName") or ""),
        capabilities=dict(spec.get("capabilities") or {}),
        ca_secret=ca_secret,
        storage=storage,
        output=_output(spec, settings),
        profiles=profiles,
        profile_budgets=profile_budgets,
        kueue=_kueue(spec),
    )


def _kueue(spec: Mapping[str, Any]) -> kueue.KueueSettings | None:
    try:
        return kueue.parse(spec.get("kueue"))
    except kueue.KueueError as exc:
        raise ConfigError(exc.field, str(exc)) from None
