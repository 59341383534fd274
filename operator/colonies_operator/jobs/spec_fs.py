"""`fs` of a funcspec: the CFS snapshots and synced directories a process wants under a mount."""

from __future__ import annotations

from typing import Any, Final

from colonies_operator.cfs.mounts import Filesystem, SnapshotMount, SyncDir
from colonies_operator.jobs.readers import SpecError, boolean, obj, objects, string

PROCESS_ID_PLACEHOLDER: Final = "{processid}"

# Mount points that would hide what every image needs.
_SYSTEM_DIRS: Final = frozenset({"bin", "dev", "etc", "lib", "lib64", "proc", "sbin", "sys", "usr", "colonies"})


def _path(value: Any, field: str, process_id: str, *, absolute: bool) -> str:
    """A POSIX path with no ".." in it, {processid} substituted; a mount must be absolute
    and not "/", a directory is taken relative to the mount."""
    text = string(value, field).replace(PROCESS_ID_PLACEHOLDER, process_id)
    parts = [p for p in text.split("/") if p not in ("", ".")]
    if ".." in parts or "\0" in text:
        raise SpecError(field, f"{field} {text!r} must not contain '..'")
    if absolute and (not text.startswith("/") or not parts):
        raise SpecError(field, f"{field} {text!r} must be an absolute path below '/', e.g. '/cfs'")
    if absolute and parts[0] in _SYSTEM_DIRS:
        raise SpecError(field, f"{field} {text!r} would hide the image's /{parts[0]}: choose another path, e.g. '/cfs'")
    return "/" + "/".join(parts)


def _label(value: Any, field: str, process_id: str) -> str:
    text = string(value, field).replace(PROCESS_ID_PLACEHOLDER, process_id).strip()
    if not text.strip("/"):
        raise SpecError(field, f"{field} is empty: expected a CFS label (a directory path such as '/data')")
    return text


def filesystem(value: Any, process_id: str, storage: bool) -> Filesystem | None:
    """`fs`: CFS snapshots and synced directories under a mount. The server echoes
    `{mount: "", snapshots: null, dirs: null}` for a funcspec without fs, so only a non-empty
    member counts as asking for it; an executor without storage refuses it rather than run
    the process without its files."""
    fs = obj(value, "fs", "mount, snapshots, dirs")
    asked = [str(key) for key, member in fs.items() if member]
    if not asked:
        return None
    if not storage:
        raise SpecError("fs", f"fs sets {', '.join(asked)}: this executor has no storage for CFS (its ColonyExecutor "
                              "sets no spec.storage), so the process would run without its files; remove fs, or "
                              "run it on an executor with storage")
    mount = _path(fs.get("mount"), "fs.mount", process_id, absolute=True)
    snapshots = []
    for i, item in enumerate(objects(fs.get("snapshots"), "fs.snapshots", "snapshotid, label, dir")):
        field = f"fs.snapshots[{i}]"
        snapshot_id = string(item.get("snapshotid"), f"{field}.snapshotid")
        if not snapshot_id or snapshot_id == "{snapshotid}":
            raise SpecError(f"{field}.snapshotid", f"{field}.snapshotid is {snapshot_id!r}: expected a snapshot id "
                                                   "(`colonies fs snapshot create`, or submit with "
                                                   "`colonies function submit --snapshot`, which fills it in)")
        boolean(item.get("keepfiles"), f"{field}.keepfiles")
        snapshots.append(SnapshotMount(snapshot_id, _label(item.get("label"), f"{field}.label", process_id),
                                       _path(item.get("dir"), f"{field}.dir", process_id, absolute=False),
                                       boolean(item.get("keepsnapshot"), f"{field}.keepsnapshot")))
    dirs = []
    for i, item in enumerate(objects(fs.get("dirs"), "fs.dirs", "label, dir, onconflicts")):
        field = f"fs.dirs[{i}]"
        boolean(item.get("keepfiles"), f"{field}.keepfiles")
        conflicts = obj(item.get("onconflicts"), f"{field}.onconflicts", "onstart, onclose")
        keep = [boolean(obj(conflicts.get(when), f"{field}.onconflicts.{when}", "keeplocal").get("keeplocal"),
                      f"{field}.onconflicts.{when}.keeplocal") for when in ("onstart", "onclose")]
        dirs.append(SyncDir(_label(item.get("label"), f"{field}.label", process_id),
                            _path(item.get("dir"), f"{field}.dir", process_id, absolute=False), *keep))
    return Filesystem(mount, tuple(snapshots), tuple(dirs))
