"""Gives every pod of the test cluster real logs, served by kwok through the pods/log API.

kwok runs no containers, so nothing prints. This small process watches Pods in all namespaces
and, for each new pod, writes one CRI-format log file per container with what that container
would have printed, creates a kwok `Logs` object (name = pod name) pointing at those files,
and only then marks the pod with the annotation `teststack.colonyos.io/logs-ready`. The kwok
stage that makes a pod Running waits for that annotation, so a Running pod always has its
complete log: an operator that starts reading at Running never sees an empty log.

What a container "prints", first match wins:
- env `KWOK_LOG`: its lines (separated by newlines or by the two characters `\\n`; `\\r`, `\\f`
  and `\\0` stand for a carriage return, a form feed and a NUL byte inside a line);
- env `KWOK_LOG_LINES=N`: `line 1` ... `line N`;
- `sh|bash|dash|ash -c <script>`: the output of each `echo` statement of the script
  (statements split on `;`, `&&`, `||`, `|`, newlines; shell quoting honoured; anything that is
  not echo, or echo redirected to a file, prints nothing);
- command `echo a b`: `a b`.
Then env `KWOK_LOG_LONG_LINE=N` adds one line of N `x` characters (a huge single line).
Timestamps start at the moment the pod is seen and grow by 1 ms per line. With env
`KWOK_LOG_INTERVAL_MS=N` the first line is written at once and each further one N ms after
the previous (timestamped when written), so a follower sees the log grow as a program's does.

Run as `python3 -m teststack.podlogs --api ... --ca ... --cert ... --key ... --out DIR`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shlex
import shutil
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import httpx

from teststack import kubeapi

READY_ANNOTATION = "teststack.colonyos.io/logs-ready"
READY_FILE = ".ready"
_SHELLS = {"sh", "bash", "dash", "ash", "busybox"}
_ESCAPES = {"\\n": "\n", "\\r": "\r", "\\f": "\f", "\\0": "\x00"}


# ---- what a container prints -------------------------------------------------------------

def _env(container: dict) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container.get("env") or [] if "name" in e}


def _statements(script: str) -> list[list[str]]:
    """Split a shell script into statements of words; operators end a statement."""
    out: list[list[str]] = []
    for line in script.splitlines():
        lex = shlex.shlex(line, posix=True, punctuation_chars=";&|<>")
        lex.whitespace_split = True
        lex.commenters = "#"
        try:
            tokens = list(lex)
        except ValueError:  # unbalanced quotes: fall back to a plain split
            tokens = line.replace(";", " ; ").split()
        cur: list[str] = []
        for t in tokens:
            if t and set(t) <= set(";&|"):
                out.append(cur)
                cur = []
            else:
                cur.append(t)
        out.append(cur)
    return [s for s in out if s]


def _echo(words: list[str]) -> str | None:
    """The output of one `echo` statement, or None when it prints nothing to stdout."""
    if not words or words[0] != "echo":
        return None
    args, words_out, skip = words[1:], [], False
    for i, w in enumerate(args):
        if skip:
            skip = False
            continue
        if w[0] in "<>":
            if w in (">", ">>") and i + 1 < len(args) and not args[i + 1].startswith("&"):
                return None  # `> file` / `>> file`: the output goes to a file, not the log
            skip = not w.endswith("&") or w == ">&"  # drop the redirection and its target
            continue
        words_out.append(w)
    args = words_out
    while args and args[0] in ("-n", "-e", "-E"):
        args = args[1:]
    return " ".join(args)


def container_output(container: dict) -> list[str]:
    lines = _printed(container)
    long_line = _env(container).get("KWOK_LOG_LONG_LINE", "").strip()
    if long_line.isdigit():
        lines.append("x" * int(long_line))
    return lines


def _printed(container: dict) -> list[str]:
    env = _env(container)
    if "KWOK_LOG" in env:
        text = env["KWOK_LOG"]
        for escape, char in _ESCAPES.items():
            text = text.replace(escape, char)
        return text.split("\n") if text else []
    if env.get("KWOK_LOG_LINES", "").strip().isdigit():
        return [f"line {i}" for i in range(1, int(env["KWOK_LOG_LINES"]) + 1)]
    # as a kubelet does: `$$` in command and args means `$` (what the operator doubles)
    argv = [w.replace("$$", "$") for w in list(container.get("command") or []) + list(container.get("args") or [])]
    if not argv:
        return []
    prog = os.path.basename(argv[0])
    if prog == "busybox" and len(argv) > 1:  # busybox sh -c ...
        argv, prog = argv[1:], argv[1]
    if prog in _SHELLS and len(argv) >= 3 and argv[1] == "-c":
        return [o for o in (_echo(s) for s in _statements(argv[2])) if o is not None]
    if prog == "echo":
        return [_echo(["echo", *argv[1:]]) or ""]
    return []


def interval_ms(container: dict) -> int:
    """`KWOK_LOG_INTERVAL_MS`: the pause between lines of a log that grows while the pod runs."""
    value = _env(container).get("KWOK_LOG_INTERVAL_MS", "").strip()
    return int(value) if value.isdigit() else 0


def cri_lines(lines: list[str], start: dt.datetime) -> str:
    """CRI log format, one full (`F`) stdout entry per line, strictly increasing timestamps."""
    out = []
    for i, line in enumerate(lines):
        t = start + dt.timedelta(milliseconds=i)
        out.append(f"{t.strftime('%Y-%m-%dT%H:%M:%S')}.{t.microsecond * 1000:09d}Z stdout F {line}\n")
    return "".join(out)


def _grow(path: Path, lines: list[str], every_ms: int) -> None:
    """Append one line every `every_ms`, stamped when written, until done or the pod is gone."""
    for line in lines:
        time.sleep(every_ms / 1000)
        try:
            with path.open("a") as f:
                f.write(cri_lines([line], dt.datetime.now(dt.timezone.utc)))
        except OSError:  # the pod was deleted and its directory removed
            return


# ---- the watcher -------------------------------------------------------------------------

PATIENCE_S = 120.0  # how long one set-up step is retried


def _patiently(step: Callable[[], None]) -> Exception | None:
    """Run `step` until it succeeds, with backoff, for up to PATIENCE_S; the last error if not.
    A refusal no retry can change ends it at once, so it holds a set-up worker no longer."""
    deadline = time.monotonic() + PATIENCE_S
    attempt = 0
    while True:
        try:
            step()
            return None
        except Exception as e:  # noqa: BLE001 - one bad pod must not stop the others
            if _refused_for_good(e) or time.monotonic() >= deadline:
                return e
        time.sleep(min(0.1 * 2 ** attempt, 2.0))
        attempt += 1


def _refused_for_good(e: Exception) -> bool:
    """400 and 422: the request itself is wrong; 403 for a namespace being deleted. Other
    4xx are retried: a restarting apiserver answers 404 for the Logs kind until its CRD is
    served again, 403 until its RBAC is loaded, and 429 under load."""
    if not isinstance(e, kubeapi.ApiError):
        return False
    return e.status in (400, 422) or (e.status == 403 and "being terminated" in e.body)


class PodLogs:
    def __init__(self, api: kubeapi.KubeAPI, out: Path, workers: int = 8):
        self.api = api
        self.out = out
        self.local = threading.local()
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="podlogs")
        self.futures: dict[str, Future] = {}  # pod uid -> its set-up task
        self.dirs: dict[str, Path] = {}

    def _client(self) -> httpx.Client:
        c = getattr(self.local, "client", None)
        if c is None:
            c = self.local.client = self.api.client()
        return c

    def seen(self, pod: dict) -> None:
        meta = pod["metadata"]
        uid = meta["uid"]
        if uid in self.futures or meta.get("deletionTimestamp"):
            return
        self.futures[uid] = self.pool.submit(self._set_up, pod)

    def gone(self, pod: dict) -> None:
        uid = pod["metadata"]["uid"]
        fut = self.futures.pop(uid, None)
        if fut is not None:
            fut.add_done_callback(lambda _f: self._clean(uid))
        else:
            self._clean(uid)

    def _clean(self, uid: str) -> None:
        d = self.dirs.pop(uid, None)
        if d is not None:
            shutil.rmtree(d, ignore_errors=True)

    def _set_up(self, pod: dict) -> None:
        """Log files, then the Logs object, then the annotation that lets the pod run.

        Each step is retried for PATIENCE_S: an apiserver restart under load takes up to half
        a minute, and a pod released without its Logs object has lost its whole log as far
        as any reader can tell. If a step still fails, the pod is released anyway: a pod
        without logs fails a test more clearly than a pod stuck in Pending.
        """
        meta = pod["metadata"]
        ns, name = meta["namespace"], meta["name"]
        entries = self._write_files(pod)
        err = _patiently(lambda: self._write_logs_object(pod, entries))
        if err is not None:
            print(f"podlogs: {ns}/{name}: no Logs object: {err}", file=sys.stderr, flush=True)
        err = _patiently(lambda: self._annotate(ns, name))
        if err is not None:
            print(f"podlogs: {ns}/{name}: could not annotate: {err}", file=sys.stderr, flush=True)

    def _annotate(self, ns: str, name: str) -> None:
        try:
            kubeapi.merge_patch(self._client(), f"/api/v1/namespaces/{ns}/pods/{name}",
                                {"metadata": {"annotations": {READY_ANNOTATION: "true"}}})
        except kubeapi.ApiError as e:
            if e.status != 404:  # 404: the pod is gone already
                raise

    def _write_files(self, pod: dict) -> list[dict]:
        meta, spec = pod["metadata"], pod.get("spec", {})
        d = self.out / meta["namespace"] / f"{meta['name']}-{meta['uid'][:8]}"
        d.mkdir(parents=True, exist_ok=True)
        self.dirs[meta["uid"]] = d
        start = dt.datetime.now(dt.timezone.utc)
        entries = []
        for c in spec.get("containers", []):
            f = d / f"{c['name']}.log"
            lines, every = container_output(c), interval_ms(c)
            f.write_text(cri_lines(lines[:1] if every else lines, start))
            if every and len(lines) > 1:
                threading.Thread(target=_grow, args=(f, lines[1:], every), daemon=True).start()
            entries.append({"containers": [c["name"]], "logsFile": str(f), "follow": True})
        return entries

    def _write_logs_object(self, pod: dict, entries: list[dict]) -> None:
        meta = pod["metadata"]
        ns, name, uid = meta["namespace"], meta["name"], meta["uid"]
        logs = {
            "apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "Logs",
            "metadata": {"name": name, "namespace": ns,
                         # the garbage collector removes it with the pod
                         "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": name, "uid": uid}]},
            "spec": {"logs": entries},
        }
        c = self._client()
        path = f"/apis/kwok.x-k8s.io/v1alpha1/namespaces/{ns}/logs"
        r = c.post(path, json=logs)
        if r.status_code == 409:  # left by an earlier pod of the same name: take it over
            kubeapi.merge_patch(c, f"{path}/{name}", {"metadata": logs["metadata"], "spec": logs["spec"]})
        else:
            kubeapi._check(r, f"POST {path}")

    def relist(self) -> str:
        with self.api.client() as c:
            lst = kubeapi.get(c, "/api/v1/pods")
        live = set()
        for pod in lst.get("items", []):
            live.add(pod["metadata"]["uid"])
            self.seen(pod)
        for uid in [u for u in self.futures if u not in live]:  # deleted while we were away
            self.gone({"metadata": {"uid": uid}})
        return lst["metadata"]["resourceVersion"]

    def run(self, ready_file: Path) -> None:
        rv = self.relist()
        ready_file.write_text(str(os.getpid()))
        with self.api.client(timeout=None) as c:
            while True:
                try:
                    for ev in kubeapi.watch(c, "/api/v1/pods", rv):
                        kind, obj = ev.get("type"), ev.get("object", {})
                        if kind == "ERROR":
                            if obj.get("code") == 410:  # too old: start over from a fresh list
                                rv = self.relist()
                            break
                        rv = obj.get("metadata", {}).get("resourceVersion", rv)
                        if kind in ("ADDED", "MODIFIED"):
                            self.seen(obj)
                        elif kind == "DELETED":
                            self.gone(obj)
                except kubeapi.ApiError as e:
                    if e.status == 410:
                        rv = self.relist()
                    else:
                        time.sleep(0.5)
                except (httpx.HTTPError, OSError):  # dropped connection, apiserver restart ...
                    time.sleep(0.5)
                    try:
                        rv = self.relist()
                    except (httpx.HTTPError, OSError, kubeapi.ApiError):
                        pass


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python3 -m teststack.podlogs", description=__doc__.split("\n")[0])
    ap.add_argument("--api", required=True)
    ap.add_argument("--ca", required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--out", required=True, type=Path)
    a = ap.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    PodLogs(kubeapi.KubeAPI(a.api, a.ca, a.cert, a.key), a.out).run(a.out / READY_FILE)


if __name__ == "__main__":
    main()
