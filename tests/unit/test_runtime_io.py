"""A process with input gets its in.json ConfigMap, owned by its Job, whether the operator
created the Job or found it created (a restart between the two requests). In-memory peers."""

from __future__ import annotations

import asyncio
import json

from tests.unit.runtime_harness import NAMESPACE, eventually, harness, running


async def test_a_process_with_input_gets_a_configmap_its_job_owns():
    async with harness() as h:
        process = await h.submit()
        h.server.process(process.processid).input = [1, {"k": "v"}]
        task = asyncio.create_task(h.runtime.run())
        try:
            name = await h.job_of(process.processid)
            cm = await eventually(lambda: h.kube.get("ConfigMap", NAMESPACE, f"{name}-input"), "the input ConfigMap")
            job = h.kube.get("Job", NAMESPACE, name)
            assert json.loads(cm["data"]["in.json"]) == [1, {"k": "v"}]
            [owner] = cm["metadata"]["ownerReferences"]
            assert (owner["kind"], owner["name"], owner["uid"]) == ("Job", name, job["metadata"]["uid"])
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def test_a_process_without_input_creates_no_configmap():
    async with running() as h:
        process = await h.submit()
        name = await h.job_of(process.processid)
        h.kube.start(name)
        h.kube.succeed(name)
        await h.ended(process.processid)
        assert h.kube.objects["ConfigMap"] == {}, "no input, no ConfigMap, no request for one"
