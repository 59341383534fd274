"""`jobTemplate` and `spec.profiles`: the overlays Jobs are built with, each profile's limits
and capacity, and the GPU product names."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from colonies_operator.config.fields import ConfigError, amount
from colonies_operator.jobs import builder, quantity, spec as funcspec
from colonies_operator.jobs.resources import Resources
from colonies_operator.jobs.spec import SpecPolicy


PROFILE_ONLY_KEYS = ("limits", "capacity")  # a profile's own keys besides the jobTemplate's
EXECUTOR_WIDE_KEYS = ("ttlSecondsAfterFinished",)  # jobTemplate keys a profile cannot change
TEMPLATE_KEYS = ("labels", "annotations", "nodeSelector", "tolerations", "serviceAccountName", "imagePullSecrets",
                 "priorityClassName", "podTemplate", "runAsNonRoot", "runAsUser", "runAsGroup", "securityProfile")


def overlay(template: Mapping[str, Any]) -> dict[str, Any]:
    """The CRD's jobTemplate → the builder's overlay keys (the CRD spells a few differently)."""
    overlay = {k: v for k, v in template.items() if k in TEMPLATE_KEYS and not k.startswith(("runAs", "security"))}
    security = {key: template[key] for key in ("runAsNonRoot", "runAsUser", "runAsGroup")
                if template.get(key) is not None}
    if security:
        overlay["securityContext"] = security
    return overlay


def profile_pool(template: Mapping[str, Any], budget: Resources) -> Resources | None:
    """A profile's `capacity`: its own budget inside the executor's (left-out amounts: the
    executor's), or None without one."""
    given = template.get("capacity")
    if given is None:
        return None
    if not isinstance(given, Mapping):
        raise ConfigError("capacity", "must be an object: {cpu, memory, gpu, maxConcurrentJobs}")
    scoped = {"capacity": given}
    cpu = amount(scoped, "capacity.cpu", quantity.parse_cpu)
    memory = amount(scoped, "capacity.memory", quantity.parse_memory)
    return Resources(cpu_millis=budget.cpu_millis if cpu is None else cpu,
                     memory_bytes=budget.memory_bytes if memory is None else memory,
                     gpus=int(given.get("gpu", budget.gpus)), jobs=int(given.get("maxConcurrentJobs", budget.jobs)))


def profile_policy(template: Mapping[str, Any], policy: SpecPolicy) -> SpecPolicy:
    """The executor's policy with a profile's `limits` over it."""
    limits = template.get("limits") or {}
    if not isinstance(limits, Mapping):
        raise ConfigError("limits", "must be an object: {cpu, memory, gpu, nodes, processesPerNode}")
    scoped = {"limits": limits}
    caps = {"max_cpu_millis": amount(scoped, "limits.cpu", quantity.parse_cpu),
            "max_memory_bytes": amount(scoped, "limits.memory", quantity.parse_memory),
            "max_gpus": int(limits["gpu"]) if limits.get("gpu") is not None else None,
            "max_nodes": int(limits["nodes"]) if limits.get("nodes") else None,
            "max_processes_per_node": int(limits["processesPerNode"]) if limits.get("processesPerNode") else None}
    return dataclasses.replace(policy, **{k: v for k, v in caps.items() if v is not None})


def profiles(spec: Mapping[str, Any], base: Mapping[str, Any], policy: SpecPolicy, budget: Resources
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
        overlays[name] = builder.Profile(overlay(merged), str(merged.get("securityProfile") or ""))
        try:
            policies[name] = profile_policy(template, policy)
            pool = profile_pool(template, budget)
        except ConfigError as exc:  # named inside the profile
            raise ConfigError(f"{path}.{exc.field}", str(exc).split(": ", 1)[1]) from None
        if pool is not None:
            pools[name] = pool
    return overlays, policies, pools


def gpu_products(gpu: Mapping[str, Any]) -> dict[str, str]:
    products = gpu.get("products") or {}
    if not isinstance(products, Mapping):
        raise ConfigError("gpu.products", "must map product names to node label values: {a100: NVIDIA-A100-SXM4-80GB}")
    for name, value in products.items():
        if not isinstance(value, str) or not funcspec.is_label_value(value) or not value:
            raise ConfigError(f"gpu.products.{name}", f"{value!r} is not a valid node label value")
    return dict(products)
