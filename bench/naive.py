"""Baseline 2, what users would write today: an executor in the style of the ColonyOS Python
tutorial, with pycolonies and the synchronous official `kubernetes` client.

One loop assigns (pycolonies cannot send availablecpu/availablemem, so the server treats
capacity as unlimited); each process gets a thread that creates a Job, polls it every second
until it ends, reads the pod's log, adds it to the process and closes it.

    python3 -m bench.naive --out FILE --count N ...   (run by bench.run)
"""

from __future__ import annotations

import argparse
import json
import threading
import time
import uuid
from collections import Counter

from crypto import Crypto  # pycolonies' own module
from kubernetes import client, config
from pycolonies import Colonies

PROCESS_ID_ANNOTATION = "colonyos.io/process-id"  # the bench's watch reads it, as for the operator's Jobs


def job_for(process, namespace: str) -> dict:
    spec = process.spec
    kwargs = spec.kwargs or {}
    args = kwargs.get("args") or []
    script = " ".join([str(kwargs.get("cmd") or ""), *(str(a) for a in (args if isinstance(args, list) else [args]))])
    resources = {}
    if spec.conditions.cpu or spec.conditions.mem:
        amounts = {k: v for k, v in (("cpu", spec.conditions.cpu), ("memory", spec.conditions.mem)) if v}
        resources = {"requests": amounts, "limits": amounts}
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": f"naive-{process.processid[:20]}", "namespace": namespace,
                     "annotations": {PROCESS_ID_ANNOTATION: process.processid}},
        "spec": {"backoffLimit": 0, "ttlSecondsAfterFinished": 300, "template": {"spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "main", "image": kwargs["docker-image"], "command": ["/bin/sh", "-c", script],
                            "env": [{"name": k, "value": v} for k, v in (spec.env or {}).items()],
                            "resources": resources}]}}},
    }


class NaiveExecutor:
    def __init__(self, a: argparse.Namespace) -> None:
        self.a = a
        self.colonies = Colonies(a.host, a.port, tls=False)
        crypto = Crypto()
        self.prvkey = crypto.prvkey()
        self.executor_id = crypto.id(self.prvkey)
        self.name = f"naive-{uuid.uuid4().hex[:8]}"
        config.load_kube_config(config_file=a.kubeconfig)
        self.batch = client.BatchV1Api()
        self.core = client.CoreV1Api()
        self.lock = threading.Lock()
        self.assigned: list[tuple[str, float]] = []
        self.created: list[tuple[str, float]] = []
        self.closed: list[tuple[str, float]] = []
        self.errors: list[str] = []
        self.requests = Counter()  # Kubernetes requests by kind
        self.polling_seconds = 0.0

    def register(self) -> None:
        executor = {"executorname": self.name, "executorid": self.executor_id, "colonyname": self.a.colony,
                    "executortype": self.a.executor_type}
        self.colonies.add_executor(executor, self.a.colony_prvkey)
        self.colonies.approve_executor(self.a.colony, self.name, self.a.colony_prvkey)
        self.colonies.add_function(self.a.colony, self.name, "execute", self.prvkey)

    def run_process(self, process) -> None:
        ns = self.a.namespace
        try:
            job = self.batch.create_namespaced_job(ns, job_for(process, ns))
            with self.lock:
                self.created.append((process.processid, time.time()))
            name = job.metadata.name
            polling = time.monotonic()
            polls = 0
            while True:
                time.sleep(1)
                polls += 1
                status = self.batch.read_namespaced_job_status(name, ns).status
                if status.succeeded or status.failed:
                    break
            pods = self.core.list_namespaced_pod(ns, label_selector=f"job-name={name}").items
            log = "".join(self.core.read_namespaced_pod_log(p.metadata.name, ns) for p in pods)
            with self.lock:
                self.polling_seconds += time.monotonic() - polling
                self.requests.update({"create": 1, "get": polls, "list": 1, "log": len(pods)})
            if log:
                self.colonies.add_log(process.processid, log, self.prvkey)
            if status.succeeded:
                self.colonies.close(process.processid, [], self.prvkey)
            else:
                self.colonies.fail(process.processid, ["the Job failed"], self.prvkey)
            with self.lock:
                self.closed.append((process.processid, time.time()))
        except Exception as err:  # the tutorial's way: report and go on
            with self.lock:
                self.errors.append(f"{process.processid[:12]}: {err}")

    def run(self) -> dict:
        self.register()
        ready = time.time()
        if self.a.ready_file:
            with open(self.a.ready_file, "w") as f:
                f.write(str(ready))
        threads = []
        deadline = time.monotonic() + self.a.deadline
        while len(self.assigned) < self.a.count and time.monotonic() < deadline:
            try:
                process = self.colonies.assign(self.a.colony, 2, self.prvkey)
            except Exception:  # "no process" comes back as an error too
                continue
            self.assigned.append((process.processid, time.time()))
            t = threading.Thread(target=self.run_process, args=(process,), daemon=True)
            t.start()
            threads.append(t)
        for t in threads:
            t.join(timeout=max(1.0, deadline - time.monotonic()))
        try:
            self.colonies.remove_executor(self.a.colony, self.name, self.a.colony_prvkey)
        except Exception:
            pass
        done = max(1, len(self.closed))
        return {"ready": ready, "assigned": self.assigned, "created": self.created, "closed": self.closed,
                "errors": self.errors[:20], "error_count": len(self.errors), "requests": dict(self.requests),
                "kube_requests_per_process": (sum(self.requests.values()) - self.requests["log"]) / done,
                "log_reads_per_process": self.requests["log"] / done,
                "polls_per_running_process_per_minute": (self.requests["get"] / self.polling_seconds * 60
                                                         if self.polling_seconds else None)}


def main() -> None:
    ap = argparse.ArgumentParser()
    for flag in ("--host", "--colony", "--colony-prvkey", "--executor-type", "--namespace", "--kubeconfig", "--out"):
        ap.add_argument(flag, required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--deadline", type=float, default=600)
    ap.add_argument("--ready-file", default="")
    a = ap.parse_args()
    result = NaiveExecutor(a).run()
    with open(a.out, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
