"""What the Jobs' native sidecars (the CFS push, the output sidecar) share: they act when the
kubelet stops them after the program, so the program must not start before they can hear it.
A SIGTERM sent earlier would be lost (PID 1 ignores signals it has no handler for, and Python
takes a while to start under a small cpu limit): each writes a ready file once its handler is
in place, in a small volume of its own, and its postStart hook, which the kubelet finishes
before it starts the next container, waits for that file."""

from __future__ import annotations

from typing import Any


def ready_hook(ready_file: str) -> dict[str, Any]:
    return {"postStart": {"exec": {"command": ["sh", "-c", f"while [ ! -e {ready_file} ]; do sleep 0.05; done"]}}}


def run_volume(name: str) -> dict[str, Any]:
    return {"name": name, "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}}
