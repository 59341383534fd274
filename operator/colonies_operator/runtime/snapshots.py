"""A process's CFS snapshots are removed once it has ended for good, not after an attempt.

The funcspec's snapshots without `keepsnapshot` are inputs made for this process (`colonies
function submit --snapshot` creates them). The Go executors remove them after every attempt,
so a retry runs without its inputs; here they go only when the process is final: closed by
this executor, or found SUCCESS, FAILED or CANCELLED after it was taken away. A process handed
back to the queue (maxexectime) keeps them for its next attempt.
"""

from __future__ import annotations

import logging

from colonies_operator.colonies import errors
from colonies_operator.colonies.files import Catalogue
from colonies_operator.colonies.models import ProcessState
from colonies_operator.jobs import spec
from colonies_operator.runtime.context import Context, End

log = logging.getLogger(__name__)

FINAL = (ProcessState.SUCCESS, ProcessState.FAILED, ProcessState.CANCELLED)


async def release(ctx: Context, run: spec.RunSpec, end: End) -> list[str]:
    """Remove the snapshots `run` no longer needs after `end`; the ids removed."""
    doomed = [s.snapshot_id for s in (run.fs.snapshots if run.fs else ()) if not s.keep_snapshot]
    if not doomed or end is End.STOPPED:
        return []
    try:
        if end is End.FENCED and (await ctx.colonies.get_process(run.process_id)).state not in FINAL:
            return []  # back in the queue, or another attempt's: its next run needs them
        catalogue = Catalogue(ctx.colonies, ctx.job_settings.colony_name)
        removed = []
        for snapshot_id in doomed:
            await catalogue.remove_snapshot(snapshot_id)
            removed.append(snapshot_id)
        return removed
    except errors.ColoniesError as exc:  # a snapshot left behind costs little; say so and go on
        log.warning("process %s: could not remove its snapshots %s: %s", run.process_id[:12], doomed, exc)
        return []
