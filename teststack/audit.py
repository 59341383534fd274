"""The apiserver's audit log: what every client of the stack asked the Kubernetes API.

kube-apiserver writes one JSON line per request at level Metadata (who, with which
User-Agent, which verb on which resource, the answer's code; no bodies) to
`<run>/audit/audit.log`, in blocking mode, so a request is in the log by the time its answer
is: a test can read what just happened. Left out: node leases, which kwok renews forever, and the
control plane's own leader-election leases (kube-node-lease, kube-system), which nobody here reads; and the RequestReceived stage (each request is logged once it is
answered, a watch or log stream also once it started). Every component of the stack uses the
same admin certificate, so a client is told apart by its User-Agent: the operator's is
`colonies-operator/<version>`, kopf's is `kopf/<version>`.

`requests(audit_dir, agents)` reads the log, rotated files included, into `Request`s.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import yaml

LOG = "audit.log"
POLICY = {
    "apiVersion": "audit.k8s.io/v1", "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [
        # Node leases (kwok renews them forever) and the control plane's own leader election;
        # the operator's Lease (leader election, in its own namespace) is logged like the rest.
        {"level": "None", "resources": [{"group": "coordination.k8s.io", "resources": ["leases"]}],
         "namespaces": ["kube-node-lease", "kube-system"]},
        {"level": "Metadata"},
    ],
}
MAX_SIZE_MB = 500  # then the log rotates to audit-<time>.log, which `requests` reads too
MAX_BACKUPS = 5


def apiserver_flags(audit_dir: Path) -> list[str]:
    """Write the policy into `audit_dir` and return kube-apiserver's flags for it."""
    audit_dir.mkdir(parents=True, exist_ok=True)
    policy = audit_dir / "policy.yaml"
    policy.write_text(yaml.safe_dump(POLICY, sort_keys=False))
    return [f"--audit-policy-file={policy}", f"--audit-log-path={audit_dir / LOG}", "--audit-log-format=json",
            "--audit-log-mode=blocking", f"--audit-log-maxsize={MAX_SIZE_MB}",
            f"--audit-log-maxbackup={MAX_BACKUPS}", "--audit-log-maxage=0"]


@dataclass(frozen=True)
class Request:
    """One request as RBAC sees it; `path` only for non-resource URLs (/version, /apis)."""

    verb: str           # get, list, watch, create, update, patch, delete, deletecollection
    group: str          # "" for the core group
    resource: str       # "" for a non-resource URL
    subresource: str
    namespace: str      # "" for cluster-scoped requests
    user_agent: str
    path: str = ""

    @property
    def rbac(self) -> tuple[str, str, str, str]:
        return self.verb, self.group, self.resource, self.subresource

    def __str__(self) -> str:
        if not self.resource:
            return f"{self.verb} {self.path}"
        what = f"{self.resource}/{self.subresource}" if self.subresource else self.resource
        where = f" in {self.namespace}" if self.namespace else " (cluster-wide)"
        return f"{self.verb} {what}" + (f".{self.group}" if self.group else "") + where


def files(audit_dir: Path | str) -> list[Path]:
    """The log and its rotated predecessors (audit-<time>.log)."""
    return sorted(Path(audit_dir).glob("audit*.log"))


def requests(audit_dir: Path | str, agents: Iterable[str]) -> Iterator[Request]:
    """Every logged request whose User-Agent starts with one of `agents` (e.g. "kopf/")."""
    needles = [f'"userAgent":"{agent}' for agent in agents]
    for path in files(audit_dir):
        with path.open(encoding="utf-8", errors="replace") as log:
            for line in log:
                if any(n in line for n in needles):  # cheap before the JSON parse: the log is big
                    yield _request(json.loads(line))


def _request(event: dict) -> Request:
    ref = event.get("objectRef") or {}
    return Request(
        verb=event["verb"], group=ref.get("apiGroup", ""), resource=ref.get("resource", ""),
        subresource=ref.get("subresource", ""), namespace=ref.get("namespace", ""),
        user_agent=event.get("userAgent", ""), path="" if ref else urlsplit(event["requestURI"]).path)
