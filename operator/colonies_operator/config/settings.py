"""The operator's own settings: flags, else environment, else defaults."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from colonies_operator.config.fields import truthy


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
    # A process assigned with no env this soon after its submission is read again once this
    # much time has passed since it (runtime/settling.py: Colonies stores env after the process).
    env_settle_seconds: float = 0.5

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ, **overrides: Any) -> OperatorSettings:
        namespaces = tuple(n for n in (env.get("COLONIES_OPERATOR_NAMESPACES") or "").split(",") if n.strip())
        values: dict[str, Any] = {
            "namespaces": namespaces,
            "all_namespaces": truthy(env.get("COLONIES_OPERATOR_ALL_NAMESPACES")),
            "leader_election": truthy(env.get("COLONIES_OPERATOR_LEADER_ELECTION")),
            "liveness_endpoint": env.get("COLONIES_OPERATOR_LIVENESS", cls.liveness_endpoint),
            "metrics_port": int(env.get("COLONIES_OPERATOR_METRICS_PORT") or cls.metrics_port),
            "server_host": env.get("COLONIES_SERVER_HOST", ""),
            "server_port": int(env.get("COLONIES_SERVER_PORT") or 50080),
            "server_tls": truthy(env.get("COLONIES_TLS")),
            "colony_name": env.get("COLONIES_COLONY_NAME", ""),
            "image": env.get("COLONIES_OPERATOR_IMAGE", ""),
            "env_settle_seconds": float(env.get("COLONIES_OPERATOR_ENV_SETTLE_SECONDS") or cls.env_settle_seconds),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)
