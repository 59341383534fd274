"""The shared Job/Pod watch keeps its cache right across expiry and dropped streams."""

import asyncio

from colonies_operator.runtime import watch as watch_module
from colonies_operator.runtime.kube import Gone
from colonies_operator.runtime.watch import JobWatch


def job(name, rv, done=False):
    conditions = [{"type": "Complete", "status": "True"}] if done else []
    return {"metadata": {"name": name, "resourceVersion": rv, "labels": {}}, "status": {"conditions": conditions}}


def pod(name, job_name, phase):
    return {"metadata": {"name": name, "labels": {"batch.kubernetes.io/job-name": job_name}},
            "status": {"phase": phase}}


class FakeKube:
    """Lists answer from `self.jobs`/`self.pods`; each watch call plays the next script."""

    def __init__(self):
        self.jobs = [job("a", "1")]
        self.pods = [pod("a-x", "a", "Running")]
        self.scripts = {"Job": [], "Pod": []}
        self.lists = {"Job": 0, "Pod": 0}
        self.go = asyncio.Event()  # scripted events wait for this

    async def list_jobs(self, namespace, selector, *, limit=None, continue_=None):
        return self._page("Job", self.jobs, limit, continue_)

    async def list_pods(self, namespace, selector, *, limit=None, continue_=None):
        return self._page("Pod", self.pods, limit, continue_)

    def _page(self, kind, items, limit, token):
        self.lists[kind] += 1
        start = int(token or 0)
        end = start + limit if limit else len(items)
        meta = {"resourceVersion": "10"} | ({"continue": str(end)} if end < len(items) else {})
        return {"metadata": meta, "items": [dict(i) for i in items[start:end]]}

    async def watch(self, kind, namespace, selector, resource_version, *, timeout_seconds):
        script = self.scripts[kind].pop(0) if self.scripts[kind] else "hang"
        if script == "hang":
            await asyncio.Event().wait()
        await self.go.wait()
        for item in script:
            if isinstance(item, Exception):
                raise item
            yield item


async def test_a_terminal_event_lost_in_a_410_gap_is_seen_after_the_relist():
    kube = FakeKube()
    kube.scripts["Job"] = [[Gone(410, "Expired", "too old")]]
    watch = JobWatch(kube, "ns")
    woken = watch.subscribe("a")
    await asyncio.wait_for(watch.start(), 1)
    woken.clear()
    kube.jobs = [job("a", "20", done=True)]  # what happened while the watch was gone
    kube.go.set()
    for _ in range(100):
        if kube.lists["Job"] >= 2:
            break
        await asyncio.sleep(0.01)
    assert kube.lists["Job"] >= 2
    assert woken.is_set()
    assert watch.state("a")[0]["status"]["conditions"][0]["type"] == "Complete"
    await watch.stop()


async def test_events_update_the_cache_and_wake_only_that_jobs_supervisor():
    kube = FakeKube()
    kube.jobs = [job("a", "1"), job("b", "1")]
    kube.scripts["Pod"] = [[{"type": "MODIFIED", "object": pod("a-x", "a", "Succeeded")},
                            {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "12"}}}]]
    watch = JobWatch(kube, "ns")
    a, b = watch.subscribe("a"), watch.subscribe("b")
    await asyncio.wait_for(watch.start(), 1)
    a.clear(), b.clear()
    kube.go.set()
    for _ in range(100):
        if watch.state("a")[1][0]["status"]["phase"] == "Succeeded":
            break
        await asyncio.sleep(0.01)
    assert watch.state("a")[1][0]["status"]["phase"] == "Succeeded"
    assert a.is_set() and not b.is_set()
    await watch.stop()


async def test_a_dropped_stream_lists_again_instead_of_dying():
    kube = FakeKube()
    kube.scripts["Job"] = [[ConnectionResetError("apiserver restarted")]]
    watch = JobWatch(kube, "ns")
    await asyncio.wait_for(watch.start(), 1)
    kube.go.set()
    for _ in range(200):
        if kube.lists["Job"] >= 2:
            break
        await asyncio.sleep(0.01)
    assert kube.lists["Job"] >= 2
    await watch.stop()


async def test_the_jobs_of_a_process_follow_lists_and_events():
    pid = "0123456789abcdef0123" + "0" * 44
    kube = FakeKube()
    first = job("colony-0123456789abcdef0123-0", "1")
    first["metadata"]["labels"]["colonyos.io/process"] = pid[:20]
    kube.jobs = [first, job("other", "1")]
    second = job("colony-0123456789abcdef0123-1", "13")
    second["metadata"]["labels"]["colonyos.io/process"] = pid[:20]
    kube.scripts["Job"] = [[{"type": "ADDED", "object": second},
                            {"type": "DELETED", "object": job("colony-0123456789abcdef0123-0", "14") | {
                                "metadata": dict(first["metadata"], resourceVersion="14")}}]]
    watch = JobWatch(kube, "ns")
    await asyncio.wait_for(watch.start(), 1)
    assert [j["metadata"]["name"] for j in watch.jobs_of_process(pid)] == ["colony-0123456789abcdef0123-0"]
    kube.go.set()
    for _ in range(100):
        if [j["metadata"]["name"] for j in watch.jobs_of_process(pid)] == ["colony-0123456789abcdef0123-1"]:
            break
        await asyncio.sleep(0.01)
    assert [j["metadata"]["name"] for j in watch.jobs_of_process(pid)] == ["colony-0123456789abcdef0123-1"]
    await watch.stop()


async def test_a_relist_reads_every_page_and_keeps_the_cached_objects_that_did_not_change(monkeypatch):
    monkeypatch.setattr(watch_module, "LIST_PAGE", 2)
    kube = FakeKube()
    kube.jobs = [job(f"j{i}", "1") for i in range(5)]
    kube.scripts["Job"] = [[Gone(410, "Expired", "too old")]]
    watch = JobWatch(kube, "ns")
    await asyncio.wait_for(watch.start(), 1)
    assert sorted(watch.jobs) == [f"j{i}" for i in range(5)] and kube.lists["Job"] == 3
    before = dict(watch.jobs)
    kube.jobs[1] = job("j1", "20", done=True)
    kube.go.set()
    for _ in range(100):
        if kube.lists["Job"] >= 6:
            break
        await asyncio.sleep(0.01)
    assert kube.lists["Job"] == 6
    assert sorted(watch.jobs) == [f"j{i}" for i in range(5)]
    assert all(watch.jobs[n] is before[n] for n in ("j0", "j2", "j3", "j4"))
    assert watch.jobs["j1"] is not before["j1"] and watch.jobs["j1"]["status"]["conditions"][0]["type"] == "Complete"
    await watch.stop()


def full_job(name, rv, reported=False):
    body = job(name, rv, done=True)
    body["metadata"] |= {"namespace": "ns", "uid": f"uid-{name}", "creationTimestamp": "2026-12-01T00:00:00Z",
                         "generation": 1, "managedFields": [{"manager": "kube-controller-manager"}]}
    body["metadata"]["labels"] = {"colonyos.io/process": "p" * 20, "app.kubernetes.io/managed-by": "colonies-operator",
                                  "team": "a", "batch.kubernetes.io/controller-uid": "u"}
    body["metadata"]["annotations"] = {"colonyos.io/process-id": "p" * 64, "note": "n" * 500} | (
        {"colonyos.io/reported": "success"} if reported else {})
    body["spec"] = {"template": {"spec": {"containers": [{"name": "main", "env": [{"name": "X", "value": "1" * 500}]}]}}}
    body["status"]["conditions"] = [{"type": "Complete", "status": "True", "reason": "CompletionsReached",
                                     "message": "Reached expected number of succeeded pods",
                                     "lastTransitionTime": "2026-12-01T00:00:05Z"}]
    body["status"]["startTime"] = "2026-12-01T00:00:01Z"
    return body


def full_pod(name, job_name, phase="Succeeded"):
    body = pod(name, job_name, phase)
    body["metadata"] |= {"uid": f"uid-{name}", "ownerReferences": [{"kind": "Job", "name": job_name}]}
    body["metadata"]["labels"] |= {"job-name": job_name, "batch.kubernetes.io/controller-uid": "u"}
    body["spec"] = {"containers": [{"name": "main", "env": [{"name": "X", "value": "1" * 500}]}]}
    body["status"]["containerStatuses"] = [{"name": "main", "state": {"terminated": {"exitCode": 0}}}]
    body["status"]["conditions"] = [{"type": "Ready", "status": "False", "reason": "PodCompleted"}]
    return body


async def test_a_reported_job_and_its_pods_keep_only_who_made_them_and_whether_they_are_done():
    """Nothing reads more of a Job once its result is in Colonies, and it stays cached until
    its TTL removes it: a Job, listed or changed, keeps its name, uid, our labels and
    annotations and its conditions' words then; its pods, their Job's name and their phase."""
    kube = FakeKube()
    kube.jobs = [full_job("listed", "1", reported=True), full_job("running", "1")]
    kube.pods = [full_pod("listed-x", "listed"), full_pod("running-x", "running")]
    kube.scripts["Job"] = [[{"type": "MODIFIED", "object": full_job("running", "2", reported=True)}]]
    kube.scripts["Pod"] = [[{"type": "MODIFIED", "object": full_pod("listed-x", "listed") | {
        "metadata": {"name": "listed-x", "labels": {"batch.kubernetes.io/job-name": "listed"}, "resourceVersion": "3"}}}]]
    watch = JobWatch(kube, "ns")
    await asyncio.wait_for(watch.start(), 1)
    assert "spec" in watch.jobs["running"] and "spec" in watch.pods["running"]["running-x"]
    kube.go.set()
    for _ in range(100):
        if "spec" not in watch.jobs["running"]:
            break
        await asyncio.sleep(0.01)
    for name, rv in (("listed", "1"), ("running", "2")):
        job_, pods = watch.state(name)
        assert job_ == {
            "metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}", "resourceVersion": rv,
                         "creationTimestamp": "2026-12-01T00:00:00Z",
                         "labels": {"colonyos.io/process": "p" * 20, "app.kubernetes.io/managed-by": "colonies-operator"},
                         "annotations": {"colonyos.io/process-id": "p" * 64, "colonyos.io/reported": "success"}},
            "status": {"conditions": ({"type": "Complete", "status": "True", "reason": "CompletionsReached"},)}}
        assert [p["status"] for p in pods] == [{"phase": "Succeeded"}]
    assert watch.pods["running"]["running-x"]["metadata"] == {
        "name": "running-x", "uid": "uid-running-x",
        "labels": {"batch.kubernetes.io/job-name": "running", "job-name": "running"}}
    await watch.stop()


async def test_a_stub_of_a_pod_without_the_job_name_labels_keeps_its_owner():
    kube = FakeKube()
    kube.jobs = [full_job("j", "1", reported=True)]
    orphan = full_pod("j-x", "j")
    orphan["metadata"]["labels"] = {}
    kube.pods = [orphan]
    watch = JobWatch(kube, "ns")
    await asyncio.wait_for(watch.start(), 1)
    assert [p["metadata"]["ownerReferences"] for p in watch.state("j")[1]] == [({"kind": "Job", "name": "j"},)]
    await watch.stop()


async def test_jobs_and_pods_relist_one_kind_at_a_time():
    """The two relists after an apiserver restart take turns: the largest transient sets the
    operator's memory for good (see JobWatch._list)."""
    kube = FakeKube()
    busy, overlapped = set(), []
    for kind, method in (("Job", "list_jobs"), ("Pod", "list_pods")):
        listing = getattr(kube, method)

        async def slow(*args, _kind=kind, _listing=listing, **kwargs):
            busy.add(_kind)
            overlapped.append(len(busy) > 1)
            await asyncio.sleep(0.05)
            busy.discard(_kind)
            return await _listing(*args, **kwargs)

        setattr(kube, method, slow)
    watch = JobWatch(kube, "ns")
    await asyncio.wait_for(watch.start(), 1)
    assert len(overlapped) == 2 and not any(overlapped)
    await watch.stop()
