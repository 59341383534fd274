"""What a funcspec's `fs` asks for, validated: the mount point, snapshots to fetch and
directories to sync, with `{processid}` already substituted.

The operator validates the user's JSON into these (jobs/spec.py) and hands them, serialised
with `to_json`, to the pull init container and the push sidecar of the process's Job.
Directories are relative to the mount: a `dir` of "/src" under mount "/cfs" is what the
program sees at /cfs/src, as with the ColonyOS executors.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any


@dataclass(frozen=True)
class SnapshotMount:
    snapshot_id: str
    label: str
    dir: str
    keep_snapshot: bool = False  # else removed once the process has ended for good


@dataclass(frozen=True)
class SyncDir:
    label: str
    dir: str
    keep_local_on_start: bool = False  # a conflict when fetching: keep the local file (else the remote)
    keep_local_on_close: bool = False  # a conflict when pushing: upload the local file (else leave the remote)


@dataclass(frozen=True)
class Filesystem:
    mount: str
    snapshots: tuple[SnapshotMount, ...] = ()
    dirs: tuple[SyncDir, ...] = ()

    def local(self, root: str, dir_: str) -> str:
        """Where `dir_` is under `root`, the volume's mount point in the container at hand."""
        return str(PurePosixPath(root) / dir_.lstrip("/"))

    def to_json(self) -> str:
        return json.dumps({
            "mount": self.mount,
            "snapshots": [{"snapshotid": s.snapshot_id, "label": s.label, "dir": s.dir,
                           "keepsnapshot": s.keep_snapshot} for s in self.snapshots],
            "dirs": [{"label": d.label, "dir": d.dir, "onconflicts": {
                "onstart": {"keeplocal": d.keep_local_on_start}, "onclose": {"keeplocal": d.keep_local_on_close}}}
                for d in self.dirs],
        }, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | Mapping[str, Any]) -> Filesystem:
        """Read what `to_json` wrote (trusted: the operator wrote it after validating)."""
        d = json.loads(text) if isinstance(text, str) else text
        return cls(
            mount=str(d["mount"]),
            snapshots=tuple(SnapshotMount(str(s["snapshotid"]), str(s["label"]), str(s["dir"]),
                                          bool(s.get("keepsnapshot"))) for s in d.get("snapshots") or ()),
            dirs=tuple(SyncDir(str(s["label"]), str(s["dir"]),
                               bool(s["onconflicts"]["onstart"]["keeplocal"]),
                               bool(s["onconflicts"]["onclose"]["keeplocal"])) for s in d.get("dirs") or ()),
        )
