"""A ColonyExecutor's spec (with the CRD's defaults applied) → a frozen `ExecutorConfig`, or a
`ConfigError` naming the field."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from colonies_operator.colonies.client import ServerAddress
from colonies_operator.config import fields, jobio, templates
from colonies_operator.config.fields import ConfigError, SecretRef
from colonies_operator.config.settings import OperatorSettings
from colonies_operator.jobs import builder, io as job_io, kueue, quantity, spec as funcspec, storage as job_storage
from colonies_operator.jobs.podtemplate import TemplateError
from colonies_operator.jobs.resources import Resources
from colonies_operator.jobs.spec import SpecPolicy

MIN_WAITING_POLL_SECONDS = 2.0  # Colonies is never asked for the waiting processes more often


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
    env_settle_seconds: float = 0.5          # the operator's setting (runtime/settling.py)

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


def default_executor_name(namespace: str, name: str, uid: str) -> str:
    """Unique per resource, so per namespace and per cluster: two ColonyExecutors called `k8s`
    in two namespaces (or clusters) of one colony must not take each other's name."""
    return f"{namespace}-{name}-{uid.replace('-', '')[:8]}" if uid else f"{namespace}-{name}"


def _waiting_poll(spec: Mapping[str, Any]) -> float:
    seconds = fields.seconds(spec, "waitingPollSeconds", 10, 0, 3600)
    if 0 < seconds < MIN_WAITING_POLL_SECONDS:
        raise ConfigError("waitingPollSeconds", f"must be 0 (off) or at least {MIN_WAITING_POLL_SECONDS:g} seconds, "
                                                f"got {seconds:g}")
    return seconds


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
    colony_key = fields.secret_ref(spec.get("colonyKeySecretRef"), "colonyKeySecretRef", "colonyPrvKey")
    if colony_key is None:
        raise ConfigError("colonyKeySecretRef", "is required: the Secret holding the colony's private key")
    tls = bool(server.get("tls", settings.server_tls))
    verify: bool | str = not server.get("insecureSkipVerify", False)
    ca_secret = fields.secret_ref(server.get("caSecretRef"), "server.caSecretRef", "ca.crt")
    if ca_secret is not None and not tls:
        raise ConfigError("server.caSecretRef", "a CA verifies an https server: set server.tls: true")
    capacity = spec.get("capacity") or {}
    limits = spec.get("limits") or {}
    gpu = spec.get("gpu") or {}
    template = spec.get("jobTemplate") or {}
    logs = spec.get("logs") or {}
    budget = Resources(
        cpu_millis=fields.amount(spec, "capacity.cpu", quantity.parse_cpu, "4") or 0,
        memory_bytes=fields.amount(spec, "capacity.memory", quantity.parse_memory, "8Gi") or 0,
        gpus=int(capacity.get("gpu") or 0),
        jobs=int(capacity.get("maxConcurrentJobs") or 100),
    )
    executor_key = fields.secret_ref(spec.get("executorKeySecretRef"), "executorKeySecretRef", "executorPrvKey")
    own_keys = {f"{name}-executor-key": f"the executor's private key ({name}-executor-key, from an earlier version)",
                colony_key.name: "the colony's private key (colonyKeySecretRef)"}
    if executor_key is not None:
        own_keys[executor_key.name] = "the executor's private key (executorKeySecretRef)"
    credentials = (spec.get("storage") or {}).get("credentialsSecretRef") if isinstance(spec.get("storage"), Mapping) else None
    if isinstance(credentials, Mapping) and credentials.get("name"):
        own_keys[str(credentials["name"])] = "the S3 keys of the executor's storage (storage.credentialsSecretRef)"
    policy = SpecPolicy(
        allowed_images=tuple(str(p) for p in spec.get("allowedImages") or ()),
        max_cpu_millis=fields.amount(spec, "limits.cpu", quantity.parse_cpu),
        max_memory_bytes=fields.amount(spec, "limits.memory", quantity.parse_memory),
        max_gpus=int(limits["gpu"]) if limits.get("gpu") is not None else None,
        max_nodes=int(limits.get("nodes") or 16),
        max_processes_per_node=int(limits.get("processesPerNode") or 16),
        default_cpu_millis=fields.amount(spec, "defaults.cpu", quantity.parse_cpu),
        default_memory_bytes=fields.amount(spec, "defaults.memory", quantity.parse_memory),
        storage=bool(spec.get("storage")),
        allowed_secrets=_allowed_secrets(spec, own_keys),
    )
    security_profile = str(template.get("securityProfile") or "")
    profiles, profile_policies, profile_budgets = templates.profiles(spec, template, policy, budget)
    policy = dataclasses.replace(policy, profiles=profile_policies)
    try:
        builder.JobSettings(namespace=namespace, executor_name="x", executor_id="", colony_name=colony,
                            job_template=templates.overlay(template), security_profile=security_profile,
                            profiles=profiles)
    except TemplateError as exc:
        raise ConfigError(exc.field, exc.message) from None
    executor_name = spec.get("executorName") or default_executor_name(namespace, name, uid)
    address = ServerAddress(str(host), int(server.get("port") or settings.server_port), tls, verify)
    storage = jobio.storage(spec, settings, address, str(colony), executor_key, ca_secret)
    # Colonies removes an executor it has not heard from for 600 s; an assign is the only way
    # to be heard, so both the long poll and the heartbeat stay well below that.
    assign_timeout = fields.seconds(spec, "assignTimeoutSeconds", 20, 1, 300)
    heartbeat = fields.seconds(spec, "heartbeatSeconds", 60, 1, 300)
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
        gpu_products=templates.gpu_products(gpu),
        gpu_memory_label=str(gpu.get("memoryLabel") or "nvidia.com/gpu.memory"),
        ttl_seconds_after_finished=template.get("ttlSecondsAfterFinished", 300),
        job_template=templates.overlay(template),
        security_profile=security_profile,
        logs=LogSettings(batch_bytes=int(logs.get("batchBytes") or 65536),
                         flush_seconds=float(logs.get("flushSeconds") or 1.0),
                         max_bytes=int(logs.get("maxBytes", 100 * 2**20))),
        pending_grace_seconds=float(spec.get("pendingGraceSeconds") or 300),
        elastic=fields.whole(capacity, "capacity.elastic", 0, 0, 10_000),
        elastic_pending_seconds=fields.whole(capacity, "capacity.elasticPendingSeconds", 1800, 1, 7 * 86400),
        waiting_poll_seconds=_waiting_poll(spec),
        assign_timeout_seconds=int(assign_timeout),
        heartbeat_seconds=heartbeat,
        paused=bool(spec.get("paused", False)),
        location_name=str(spec.get("locationName") or ""),
        capabilities=dict(spec.get("capabilities") or {}),
        ca_secret=ca_secret,
        storage=storage,
        output=jobio.output(spec, settings),
        profiles=profiles,
        profile_budgets=profile_budgets,
        kueue=_kueue(spec),
        env_settle_seconds=settings.env_settle_seconds,
    )


def _kueue(spec: Mapping[str, Any]) -> kueue.KueueSettings | None:
    try:
        return kueue.parse(spec.get("kueue"))
    except kueue.KueueError as exc:
        raise ConfigError(exc.field, str(exc)) from None
