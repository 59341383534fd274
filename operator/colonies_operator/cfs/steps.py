"""The two CFS steps of a process's Job, run from the operator's own image:

- `pull`, the init container: fetch every snapshot, then sync every directory in (a conflict
  with a snapshot's file is decided by `onconflicts.onstart.keeplocal`). Any failure ends the
  container non-zero before the program starts; its termination message names the label and
  file, and the operator fails the process with it.
- `push`, a native sidecar: sleep until the kubelet stops it (which it does once the program
  has ended), then sync every directory out (`onconflicts.onclose.keeplocal`). A failure names
  the files not synced the same way, and the operator does not report success.

A push happens only while the attempt is still the process's current one: a pod stopped
because the process was cancelled, or handed to another attempt, pushes nothing.
Both read their settings from the environment the operator's Job builder gives them.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from colonies_operator.cfs.mounts import Filesystem
from colonies_operator.cfs.s3 import S3Client, S3Config
from colonies_operator.cfs.sync import Syncer
from colonies_operator.colonies.client import Connection, RetryPolicy, ServerAddress
from colonies_operator.colonies.files import Catalogue
from colonies_operator.colonies.models import ProcessState

TERMINATION_LOG = Path("/dev/termination-log")
# The variables the Job builder sets on the two containers (jobs/builder.py).
ENV_FS = "COLONIES_CFS"             # Filesystem.to_json()
ENV_ROOT = "COLONIES_CFS_ROOT"      # where the fs volume is mounted in this container
ENV_ATTEMPT = "COLONIES_ATTEMPT"    # the process's retries count this Job runs for
ENV_KEY = "COLONIES_PRVKEY"         # the executor's key, from its Secret
ENV_READY = "COLONIES_CFS_READY"    # the push writes this file once it can hear SIGTERM


@dataclass(frozen=True)
class StepSettings:
    server: ServerAddress
    colony: str
    key: str = field(repr=False)
    process_id: str
    attempt: int
    fs: Filesystem
    root: Path
    s3: S3Config

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> StepSettings:
        missing = [k for k in ("COLONIES_SERVER_HOST", "COLONIES_COLONY_NAME", ENV_KEY, "COLONIES_PROCESS_ID",
                               ENV_FS, ENV_ROOT) if not env.get(k)]
        if missing:
            raise ValueError(f"not set: {', '.join(missing)}")
        tls = env.get("COLONIES_TLS", "").lower() == "true"
        return cls(
            server=ServerAddress(env["COLONIES_SERVER_HOST"], int(env.get("COLONIES_SERVER_PORT") or 50080), tls,
                                 env.get("COLONIES_CA_FILE") or True),
            colony=env["COLONIES_COLONY_NAME"], key=env[ENV_KEY], process_id=env["COLONIES_PROCESS_ID"],
            attempt=int(env.get(ENV_ATTEMPT) or 0), fs=Filesystem.from_json(env[ENV_FS]), root=Path(env[ENV_ROOT]),
            s3=S3Config.from_env(env),
        )


def say(message: str) -> None:
    """A progress line in the container's log (`kubectl logs <pod> -c cfs-pull|cfs-push`)."""
    print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)


def _planned(plans: list) -> str:
    return f"{sum(len(p.upload) for p in plans)} to upload, {sum(len(p.download) for p in plans)} to download"


async def pull(settings: StepSettings) -> str:
    """Fetch the snapshots and sync the directories in; a summary line, or an exception."""
    async with Connection(settings.server, retry=RetryPolicy(attempts=4)) as conn, S3Client(settings.s3) as s3:
        syncer = Syncer(Catalogue(conn.client(settings.key), settings.colony), s3)
        copied = 0
        for snap in settings.fs.snapshots:
            say(f"snapshot {snap.snapshot_id} into {snap.dir}")
            copied += await syncer.pull_snapshot(snap.snapshot_id, Path(settings.fs.local(str(settings.root), snap.dir)))
        for d in settings.fs.dirs:
            root = Path(settings.fs.local(str(settings.root), d.dir))
            root.mkdir(parents=True, exist_ok=True)
            plans = await syncer.plan_tree(root, d.label, d.keep_local_on_start)
            say(f"{d.label} into {d.dir}: {_planned(plans)}")
            copied += await syncer.apply(f"pull {d.label}", plans)
        return f"pulled {copied} files"


async def still_current(conn: Connection, settings: StepSettings) -> str:
    """"" while this attempt still holds the process; else why it does not."""
    client = conn.client(settings.key)
    process = await client.get_process(settings.process_id)
    if process.state is not ProcessState.RUNNING:
        return f"the process is {process.state.name}"
    if process.assignedexecutorid != client.id or process.retries != settings.attempt:
        return "the process has moved to another attempt"
    return ""


async def push(settings: StepSettings) -> str:
    """Sync the directories out, if this attempt is still the process's; a summary line."""
    say("stopped: the program has ended (or the pod is being deleted)")
    async with Connection(settings.server, retry=RetryPolicy(attempts=4)) as conn, S3Client(settings.s3) as s3:
        if why := await still_current(conn, settings):
            return f"nothing pushed: {why}"
        syncer = Syncer(Catalogue(conn.client(settings.key), settings.colony), s3)
        if settings.fs.dirs and not await s3.bucket_exists():
            await s3.create_bucket()  # as the Go tools do on first use
        copied = 0
        for d in settings.fs.dirs:
            root = Path(settings.fs.local(str(settings.root), d.dir))
            plans = await syncer.plan_tree(root, d.label, d.keep_local_on_close, download=False)
            say(f"{d.dir} into {d.label}: {_planned(plans)}")
            copied += await syncer.apply(f"push {d.label}", plans, mark=False)  # the pod is ending
        return f"pushed {copied} files"


async def wait_for_stop(ready: str = "") -> None:
    """Until SIGTERM (the kubelet stopping a sidecar) or SIGINT; `ready` is a file written
    once the handler is in place (the sidecar's postStart hook waits for it)."""
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopped.set)
    if ready:
        Path(ready).write_text("")
    say("waiting for the program to end")
    await stopped.wait()


def report(message: str, *, path: Path = TERMINATION_LOG) -> None:
    """Print `message` and leave it as the container's termination message (best effort:
    outside a pod there is no termination log)."""
    print(message, flush=True)
    try:
        path.write_text(message[:4000])
    except OSError:
        pass
