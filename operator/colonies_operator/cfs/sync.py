"""CFS sync: a local directory tree ↔ a label tree in the catalogue, bytes in S3.

The rules are the Go tools' (`colonies fs sync`), so both sides see the same tree:
- every directory is its own label (dir/sub ↔ label/sub); file names are base names;
- a file only on one side is copied to the other; a file on both sides with different
  SHA-256 is a conflict, and `keep_local` decides which side wins;
- deletions do not propagate; an empty file is recorded but not stored in S3;
- a `.cfs` file (`{"label": ...}`) marks each synced directory and is never synced.

Planning is pure (`plan_dir`); `Syncer` reads both sides, applies plans with bounded
concurrency, and reports every file it could not copy rather than stopping at the first.
Downloads are checked against the catalogue's checksum before they replace anything.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from colonies_operator.cfs.s3 import S3Client, S3Error
from colonies_operator.colonies.errors import ColoniesError
from colonies_operator.colonies.files import Catalogue, CatalogueFile, RemoteFile, S3Location, normal_label

MARKER = ".cfs"
_PART = ".cfs-part-"


@dataclass(frozen=True)
class LocalFile:
    name: str
    size: int
    checksum: str


@dataclass(frozen=True)
class DirPlan:
    """What one directory needs: files to upload into its label and files to download."""

    dir: Path
    label: str
    upload: tuple[LocalFile, ...] = ()
    download: tuple[RemoteFile, ...] = ()


@dataclass(frozen=True)
class Failure:
    label: str
    name: str
    reason: str

    def __str__(self) -> str:
        return f"{self.label.rstrip('/')}/{self.name}: {self.reason}"


class SyncError(Exception):
    """Files that could not be copied; the message names each (label/name: why)."""

    def __init__(self, action: str, failures: Sequence[Failure], total: int) -> None:
        self.failures = tuple(failures)
        shown = "; ".join(map(str, self.failures[:10]))
        more = f"; and {len(self.failures) - 10} more" if len(self.failures) > 10 else ""
        super().__init__(f"{action}: {len(self.failures)} of {total} files not synced: {shown}{more}")


def open_regular(path: Path):
    """`path` opened for reading, never through a symbolic link: the push runs in a container
    that holds keys, and a link the program left (to /proc/self/environ, say) would read the
    push's own files, not the program's."""
    return os.fdopen(os.open(path, os.O_RDONLY | os.O_NOFOLLOW), "rb")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open_regular(path) as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def scan(directory: Path) -> dict[str, LocalFile]:
    """The regular files directly in `directory` (not the marker, not partial downloads, and
    never what a symbolic link points to)."""
    found: dict[str, LocalFile] = {}
    if not directory.is_dir() or directory.is_symlink():
        return found
    for entry in os.scandir(directory):
        if entry.name == MARKER or entry.name.startswith(_PART) or not entry.is_file(follow_symlinks=False):
            continue
        found[entry.name] = LocalFile(entry.name, entry.stat().st_size, sha256_file(Path(entry.path)))
    return found


def plan_dir(directory: Path, label: str, local: dict[str, LocalFile], remote: Iterable[RemoteFile],
             keep_local: bool, *, download: bool = True) -> DirPlan:
    """Compare one directory with its label. `download=False` plans uploads only (a push at
    the end of a run has no use for what only the remote side has)."""
    remote_by_name = {r.name: r for r in remote}
    upload = [f for name, f in sorted(local.items()) if name not in remote_by_name]
    fetch = [r for name, r in sorted(remote_by_name.items()) if name not in local]
    for name, r in sorted(remote_by_name.items()):
        if name in local and local[name].checksum != r.checksum:
            (upload.append(local[name]) if keep_local else fetch.append(r))
    return DirPlan(directory, label, tuple(upload), tuple(fetch) if download else ())


def _safe_part(part: str) -> bool:
    return bool(part) and part not in (".", "..") and "/" not in part and "\0" not in part


def below(root: Path, label: str, sub_label: str) -> Path:
    """The directory of `sub_label` under `root`, where `label` is at `root`. A label that
    would lead outside `root` ("..", empty parts) raises ValueError."""
    base = label.rstrip("/")
    rel = sub_label[len(base):] if sub_label.startswith(base) else "?"
    parts = rel[1:].split("/") if rel else []
    if (rel and not rel.startswith("/")) or not all(_safe_part(p) for p in parts):
        raise ValueError(f"label {sub_label!r} does not name a directory below {label!r}")
    return root.joinpath(*parts)


class Syncer:
    def __init__(self, catalogue: Catalogue, s3: S3Client, *, concurrency: int = 8) -> None:
        self.catalogue = catalogue
        self.s3 = s3
        self._slots = asyncio.Semaphore(concurrency)

    async def plan_tree(self, root: Path, label: str, keep_local: bool, *, download: bool = True) -> list[DirPlan]:
        """Plans for `root` and every directory below it, and for every label below `label`
        that has no directory yet (when downloading)."""
        label = normal_label(label)
        if root.is_symlink():
            raise ValueError(f"{root} is a symbolic link, not a directory: nothing under it is synced")
        dirs: dict[str, Path] = {label: root}
        if root.is_dir():
            for current, subdirs, _ in os.walk(root):
                subdirs.sort()
                rel = PurePosixPath(Path(current).relative_to(root).as_posix())
                if str(rel) != ".":
                    dirs[f"{label.rstrip('/')}/{rel}"] = Path(current)
        if download:
            for sub in await self.catalogue.labels_below(label):
                dirs.setdefault(sub, below(root, label, sub))
        plans = []
        for sub, directory in sorted(dirs.items()):
            remote = await self.catalogue.files(sub)
            plans.append(plan_dir(directory, sub, scan(directory), remote, keep_local, download=download))
        return plans

    async def apply(self, action: str, plans: Sequence[DirPlan], *, mark: bool = True) -> int:
        """Carry out `plans`; the number of files copied, or SyncError naming every failure.
        `mark` writes the `.cfs` marker into each synced directory, as a sync does."""
        jobs = []
        for plan in plans:
            if plan.download or plan.upload:
                plan.dir.mkdir(parents=True, exist_ok=True)
            if mark and (plan.download or plan.upload):
                (plan.dir / MARKER).write_text(json.dumps({"label": plan.label}, separators=(",", ":")))
            jobs += [self._guarded(plan.label, f.name, self._upload(plan, f)) for f in plan.upload]
            jobs += [self._guarded(plan.label, r.name, self._download(plan.dir, r)) for r in plan.download]
        results = await asyncio.gather(*jobs)
        failures = [f for f in results if f is not None]
        if failures:
            raise SyncError(action, failures, len(jobs))
        return len(jobs)

    async def _guarded(self, label: str, name: str, work) -> Failure | None:
        async with self._slots:
            try:
                await work
            except (S3Error, ColoniesError, OSError, ValueError) as exc:
                return Failure(label, name, str(exc))
        return None

    async def _upload(self, plan: DirPlan, f: LocalFile) -> None:
        key = secrets.token_hex(32)  # a fresh object per revision, as the Go tools name them
        if f.size > 0:
            await self.s3.put_file(key, plan.dir / f.name, f.size, f.checksum)
        cfg = self.s3.config
        await self.catalogue.add(CatalogueFile(
            label=plan.label, name=f.name, size=f.size, checksum=f.checksum,
            location=S3Location(endpoint=cfg.endpoint, tls=cfg.tls, region=cfg.region, bucket=cfg.bucket, object=key),
        ))

    async def _download(self, directory: Path, r: RemoteFile) -> None:
        if not _safe_part(r.name):
            raise ValueError(f"file name {r.name!r} is not a plain file name")
        target = directory / r.name
        part = directory / f"{_PART}{r.name}"
        try:
            if r.size > 0:
                await self.s3.get_file(r.object, part)
            else:
                part.write_bytes(b"")
            got = sha256_file(part)
            if got != r.checksum:
                raise ValueError(f"downloaded bytes have SHA-256 {got}, the catalogue says {r.checksum}")
            os.replace(part, target)
        finally:
            part.unlink(missing_ok=True)

    async def pull_snapshot(self, snapshot_id: str, root: Path) -> int:
        """Fetch every file of a snapshot into `root`, keeping its directory layout; files
        already there with the same checksum are left alone."""
        snapshot = await self.catalogue.snapshot(snapshot_id)
        files: list[CatalogueFile] = [await self.catalogue.file(fid) for fid in snapshot.file_ids]
        by_label: dict[str, list[RemoteFile]] = {}
        for f in files:
            by_label.setdefault(f.label, []).append(RemoteFile(f.name, f.size, f.checksum, f.location.object))
        plans = []
        for label, remote in sorted(by_label.items()):
            directory = below(root, snapshot.label, label)
            local = scan(directory)
            fetch = tuple(r for r in remote if r.name not in local or local[r.name].checksum != r.checksum)
            plans.append(DirPlan(directory, label, (), fetch))
        return await self.apply(f"snapshot {snapshot_id}", plans, mark=False)
