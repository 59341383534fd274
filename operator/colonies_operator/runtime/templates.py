"""The apiserver's word on an executor's pod templates, before any process depends on them.

A podTemplate is checked here against the operator's floor (jobs/podtemplate.py), but what
Kubernetes itself accepts (a volume without a source, a misspelt field of a container) only
the apiserver knows: so a Job built from each template is created with dryRun=All, and a 422
Invalid becomes a condition naming the template, instead of every process failing later.
Other refusals (a full quota, an admission webhook's rule) say nothing about the template and
are left to the Jobs themselves.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from colonies_operator.jobs import builder, spec
from colonies_operator.runtime.kube import UNREACHABLE, KubeApi, KubeError

if TYPE_CHECKING:
    from colonies_operator.config import ExecutorConfig

log = logging.getLogger(__name__)

SAMPLE_PROCESS_ID = "0" * 64  # no real process has it; with dryRun nothing is stored anyway


def _sample(profile: str) -> spec.RunSpec:
    return spec.RunSpec(process_id=SAMPLE_PROCESS_ID, attempt=0, image="template-check", command=("true",), args=(),
                        env=(), cpu_millis=None, memory_bytes=None, gpu_count=0, gpu_name="", nodes=1,
                        processes_per_node=1, deadline_seconds=None, profile=profile)


def _templated(config: ExecutorConfig) -> list[tuple[str, str]]:
    """(profile, field) of every template that has a podTemplate; "" is the plain jobTemplate."""
    found = [("", "jobTemplate")] if "podTemplate" in config.job_template else []
    return found + [(name, f"profiles.{name}") for name, p in config.profiles.items() if "podTemplate" in p.overlay]


async def refusal(kube: KubeApi, config: ExecutorConfig) -> str | None:
    """Why the apiserver would refuse the Jobs of one of `config`'s templates, or None."""
    settings = config.job_settings(executor_id="")
    for profile, field in _templated(config):
        try:
            job = builder.build_job(_sample(profile), settings)
            await kube.create_job(config.namespace, job, dry_run=True)
        except ValueError as exc:
            return f"spec.{field}.podTemplate: {exc}"
        except KubeError as exc:
            if exc.status == 422:
                return f"spec.{field}.podTemplate: the apiserver refuses the Jobs it makes: {exc.message}"
            log.debug("dry run of %s's %s: %s (not a template problem)", config.resource_name, field, exc)
        except UNREACHABLE as exc:  # no answer: nothing learnt about the template; the Jobs will tell
            log.info("dry run of %s's %s: the apiserver did not answer (%s)", config.resource_name, field, exc)
    return None
