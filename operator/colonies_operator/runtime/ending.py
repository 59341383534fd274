"""How a supervisor ends its process: report the success or failure to Colonies exactly once,
then mark (or delete) the Job; or, fenced, delete the Job and report nothing.

A mixin of `Supervisor` (runtime/supervisor.py), which holds the state these use.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from colonies_operator import outfile
from colonies_operator.colonies import errors
from colonies_operator.colonies.models import ProcessState
from colonies_operator.jobs import diagnosis
from colonies_operator.runtime import io, jobops
from colonies_operator.runtime.context import End, Fenced, internal_error, report
from colonies_operator.runtime.kube import KubeError

if TYPE_CHECKING:
    from colonies_operator.runtime.context import Context
    from colonies_operator.runtime.following import LogFollower
    from colonies_operator.runtime.logs import LogShipper

log = logging.getLogger(__name__)


class Ending:
    ctx: Context
    namespace: str
    job_name: str
    follower: LogFollower
    shipper: LogShipper
    pid: str
    _closing: bool

    async def _delete_job(self, name: str | None = None) -> None:
        await jobops.delete(self.ctx.kube, self.namespace, name or self.job_name)

    async def _job_event(self, type_: str, reason: str, message: str) -> None:
        job, _ = self.ctx.watch.state(self.job_name)
        uid = ((job or {}).get("metadata") or {}).get("uid", "")
        await jobops.post_event(self.ctx.kube, self.namespace, self.job_name, uid, type_, reason, message)

    async def _mark_reported(self, how: str) -> None:
        """The result is in Colonies: mark the Job, and only now let its TTL remove it."""
        await jobops.mark_reported(self.ctx.kube, self.namespace, self.job_name, how,
                                   self.ctx.job_settings.ttl_seconds_after_finished)

    async def _succeed(self, pods: list[dict[str, Any]]) -> End:
        await self.follower.finish(pods)
        await report(self.shipper.flush, f"shipping the last log lines of {self.pid[:12]}")
        try:
            output = await io.read_output(self.ctx, pods) or diagnosis.termination_output(pods)
        except (outfile.OutputError, KubeError) as exc:
            return await self._fail_with(f"OutputFailed({exc}): the output of /colonies/out.json could not be "
                                         "read back whole", pods)
        self._closing = True
        for note in output.notes:  # e.g. a termination message Kubernetes cut: said in the log
            self.shipper.add(note)
        if output.notes:
            await report(self.shipper.flush, f"shipping the output notes of {self.pid[:12]}")
        await self._close(lambda: self.ctx.colonies.close_successful(self.pid, list(output.values)), "closing")
        await self._mark_reported("success")
        return End.SUCCEEDED

    async def _fail_with(self, found: diagnosis.Diagnosis | str, pods: list[dict[str, Any]], *,
                         job_finished: bool = True, job_exists: bool = True) -> End:
        if pods:
            await self.follower.finish(pods)
        await report(self.shipper.flush, f"shipping the last log lines of {self.pid[:12]}")
        self._closing = True
        message = found if isinstance(found, str) else found.error_message(list(self.shipper.tail))
        await self._close(lambda: self.ctx.colonies.close_failed(self.pid, [message]), "failing")
        if job_exists:
            reason = message.split("(", 1)[0].split(":", 1)[0] if isinstance(found, str) else found.reason.value
            await self._job_event("Warning", reason, message.split("\n", 1)[0])
            if job_finished:
                await self._mark_reported("failed")
            else:
                await self._delete_job()  # never leave a pod pending or a container running for nothing
        return End.FAILED

    async def _close(self, call: Callable[[], Awaitable[None]], what: str) -> None:
        """Report the end. A 400 means the process was closed or cancelled meanwhile (fencing),
        or, if it is still ours and running, that Colonies refused what we sent: a bug to surface."""
        try:
            await report(call, f"{what} {self.pid[:12]}")
        except errors.BadRequest as exc:
            process = await self.ctx.colonies.get_process(self.pid)
            if process.state is not ProcessState.RUNNING or process.assignedexecutorid != self.ctx.colonies.id:
                raise Fenced(f"it was {process.state.name.lower()} when we closed it") from None
            raise RuntimeError(f"Colonies refused {what} the process: {exc.message}") from None

    async def _fenced_end(self, exc: BaseException) -> End:
        log.info("process %s is no longer ours (%s); deleting its Job", self.pid[:12], exc)
        if self.ctx.watch.state(self.job_name)[0] is not None:
            await self._job_event("Normal", "Fenced", f"process {self.pid} is no longer this executor's ({exc}); "
                                                      "deleting the Job, reporting nothing")
        await self._delete_job()
        return End.FENCED

    async def _internal_error(self, exc: Exception) -> End:
        await self._delete_job()
        self._closing = True
        try:
            await report(lambda: self.ctx.colonies.close_failed(self.pid, [internal_error(exc)]), f"failing {self.pid[:12]}")
        except errors.ColoniesRejected:
            return End.FENCED
        return End.FAILED
