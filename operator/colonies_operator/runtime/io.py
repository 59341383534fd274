"""A process's workflow input and file output around its Job (jobs/io.py, outfile.py).

`ensure_input` creates the ConfigMap that carries /colonies/in.json once the Job exists (it
is owned by the Job, so it goes with it); creating it again is harmless, so an adopted Job
whose ConfigMap a crash left uncreated gets it too. `read_output` reads what the output
sidecar handed over, from its log, once the pod is done.
"""

from __future__ import annotations

import logging
from typing import Any

from colonies_operator import outfile
from colonies_operator.jobs import diagnosis, io, spec, statuses
from colonies_operator.runtime import logs
from colonies_operator.runtime.context import Context
from colonies_operator.runtime.kube import Conflict

log = logging.getLogger(__name__)


async def ensure_input(ctx: Context, run: spec.RunSpec, job: dict[str, Any]) -> None:
    """The in.json ConfigMap of `job` (as the apiserver returned it, with its uid)."""
    if not run.input_json or not (job.get("metadata") or {}).get("uid"):
        return
    try:
        await ctx.kube.create_configmap(job["metadata"]["namespace"], io.input_configmap(job, run.input_json))
    except Conflict:
        pass  # created before: by this attempt before a restart


async def read_output(ctx: Context, pods: list[dict[str, Any]]) -> diagnosis.ProcessOutput | None:
    """The output out.json gave (the first pod's), or None when the program wrote none and
    the termination message counts. OutputError when the frame cannot be read whole."""
    done = [p for p in statuses.ordered_pods(pods) if statuses.phase(p) == "Succeeded"]
    if ctx.job_settings.output is None or not done:
        return None
    pod = done[0]["metadata"]
    lines = []
    async for raw in ctx.kube.pod_log(pod["namespace"], pod["name"], io.OUTPUT, follow=False):
        _, text = logs.parse_line(raw)
        lines.append(text)
    found = outfile.unframe(lines)
    if found.data is None:
        return None
    return diagnosis.file_output(found.data)
