"""Pinned versions of everything the stack builds, and where the build cache lives."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

KUBERNETES: Final = "v1.37.2"
KUBERNETES_STAGING: Final = "v0.37.2"  # k8s.io/* staging modules of the same release
ETCD: Final = "v3.6.16"
KWOK: Final = "v0.8.0"
HELM: Final = "v3.22.0"
COLONIES: Final = "v1.9.12"
# SeaweedFS tags ("3.80") are not Go module versions; the proxy serves commits as pseudo-versions.
SEAWEEDFS: Final = "v0.0.0-20261109003541-7506e5f91cd6"
KUEUE: Final = "v0.17.0"  # sigs.k8s.io/kueue: the admission controller of the Kueue tests
# Images of the real node (teststack/images.py). Bump IMAGES when the way they are made changes.
IMAGES: Final = "r1"
PAUSE_IMAGE: Final = "localhost/teststack/pause:1"
BUSYBOX_IMAGE: Final = "docker.io/library/busybox:1.36"  # what `busybox:1.36` in a pod spec means

# The Kubernetes commands, built in one `go build` so they share its compile work; kubelet and
# kube-proxy run the stack's real node (teststack/realnode.py).
KUBERNETES_COMMANDS: Final = (
    "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "kubelet", "kube-proxy",
)
BINARIES: Final = ("colonies", "etcd", *KUBERNETES_COMMANDS, "kwok", "helm")


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "colonies-operator"


def bin_dir() -> Path:
    """One directory per combination of versions, so a version bump never reuses stale binaries."""
    tag = "-".join((KUBERNETES, ETCD, KWOK, HELM, COLONIES))
    return cache_root() / f"bin-{tag}"


def binary(name: str) -> Path:
    return bin_dir() / name


def weed_dir() -> Path:
    """SeaweedFS (the stack's S3 server) in a directory of its own version, so adding or bumping
    it never rebuilds the other binaries."""
    return cache_root() / f"seaweedfs-{SEAWEEDFS}"


def weed() -> Path:
    return weed_dir() / "weed"


def kueue_dir() -> Path:
    """The Kueue manager in a directory of its own version, like SeaweedFS: only the Kueue
    tests start it, and adding or bumping it rebuilds nothing else."""
    return cache_root() / f"kueue-{KUEUE}"


def kueue() -> Path:
    return kueue_dir() / "kueue"


def images_dir() -> Path:
    """The real node's image archives, versioned apart from the binaries (they change apart)."""
    return cache_root() / f"images-{IMAGES}"
