"""py-spy on the running operator (sampling from outside: no instrumentation, little overhead),
summarised as text: where the operator's CPU time goes, by package and by function."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench.harness import Bench

RATE = 100  # samples per second
PROFILES = Path(__file__).resolve().parent / "profiles"
_FRAME = re.compile(r"^(.*) \((.*?)(?::(\d+))?\)$")
CATEGORIES = (  # first match on the frame's file path
    ("colonies_operator", "ours (colonies_operator)"), ("kopf", "kopf"), ("kubernetes_asyncio", "kubernetes_asyncio"),
    ("aiohttp", "aiohttp"), ("yarl", "aiohttp"), ("multidict", "aiohttp"), ("httpx", "httpx"), ("httpcore", "httpx"),
    ("h11", "httpx"), ("prometheus_client", "prometheus_client"), ("coincurve", "coincurve"),
    ("json", "json (stdlib)"), ("asyncio", "asyncio (stdlib)"), ("ssl", "ssl (stdlib)"), ("selectors", "asyncio (stdlib)"),
    ("logging", "logging (stdlib)"),
)


@dataclass
class Spy:
    name: str
    proc: subprocess.Popen[bytes]
    raw: Path
    started: float


def _py_spy() -> str | None:
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


def start(b: Bench, name: str) -> Spy | None:
    exe = _py_spy()
    if exe is None or b.operator is None:
        return None
    raw = b.out / "profiles" / f"{name}.raw"
    raw.parent.mkdir(parents=True, exist_ok=True)
    log = open(b.out / "logs" / f"py-spy-{name}.log", "wb")
    proc = subprocess.Popen([exe, "record", "--pid", str(b.operator.pid), "--rate", str(RATE), "--nonblocking",
                             "--format", "raw", "--output", str(raw)], stdout=log, stderr=subprocess.STDOUT)
    b.cpu.track("py-spy", proc.pid)
    return Spy(name, proc, raw, time.time())


def stop(b: Bench, spy: Spy, *, published_as: str = "", header: str = "") -> dict[str, Any]:
    """Stop sampling and summarise; the summary, `header` first, also goes to bench/profiles/
    as `published_as` (default: the sampler's name), to be committed with a reference run."""
    seconds = time.time() - spy.started
    if spy.proc.poll() is None:
        spy.proc.send_signal(signal.SIGINT)
        try:
            spy.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            spy.proc.kill()
            spy.proc.wait()
    b.cpu.forget("py-spy")
    if not spy.raw.exists():
        return {"error": f"py-spy wrote nothing (see logs/py-spy-{spy.name}.log)"}
    text, top = summarise(spy.raw.read_text(), seconds, spy.name)
    text = header + text
    (b.out / "profiles" / f"{spy.name}.txt").write_text(text)
    PROFILES.mkdir(exist_ok=True)
    published = PROFILES / f"{published_as or spy.name}.txt"
    published.write_text(text)
    return top | {"summary": str(published)}


def _parse(frame: str) -> tuple[str, str]:
    m = _FRAME.match(frame)
    if not m:
        return frame, ""
    return m.group(1), m.group(2)


def _short(path: str) -> str:
    for marker in ("site-packages/", "colonies_operator/", "lib/python3"):
        i = path.find(marker)
        if i >= 0:
            return path[i + (len(marker) if marker == "site-packages/" else 0):]
    return path


def _category(path: str) -> str:
    for needle, name in CATEGORIES:
        if f"/{needle}/" in path or f"/{needle}.py" in path or path.startswith(f"{needle}/"):
            return name
    return "other"


def summarise(raw: str, seconds: float, name: str, top_n: int = 25) -> tuple[str, dict[str, Any]]:
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    ours_inclusive: Counter[str] = Counter()
    categories: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [_parse(f) for f in stack.split(";") if f]
        if not frames:
            continue
        func, path = frames[-1]
        self_time[f"{func} ({_short(path)})"] += n
        categories[_category(path)] += n
        seen = set()
        for func, path in frames:
            key = f"{func} ({_short(path)})"
            if key in seen:
                continue
            seen.add(key)
            inclusive[key] += n
            if "colonies_operator" in path:
                ours_inclusive[key] += n
    cpu = total / RATE
    lines = [f"py-spy profile of the operator: {name}",
             f"window {seconds:.1f}s, {total} samples at {RATE}/s of non-idle stacks = {cpu:.1f} CPU seconds "
             f"(~{cpu / seconds if seconds else 0:.0%} of one core)", "",
             "CPU by package (leaf frame):"]
    for cat, n in categories.most_common():
        lines.append(f"  {n / max(total, 1):6.1%}  {cat}")
    lines += ["", f"top {top_n} functions by self time:"]
    for key, n in self_time.most_common(top_n):
        lines.append(f"  {n / max(total, 1):6.1%}  {key}")
    lines += ["", f"top {top_n} functions by inclusive time:"]
    for key, n in inclusive.most_common(top_n):
        lines.append(f"  {n / max(total, 1):6.1%}  {key}")
    lines += ["", f"top {top_n} of our functions (colonies_operator) by inclusive time:"]
    for key, n in ours_inclusive.most_common(top_n):
        lines.append(f"  {n / max(total, 1):6.1%}  {key}")
    top = {"window_s": round(seconds, 1), "cpu_seconds": round(cpu, 1),
           "by_package": {c: round(n / max(total, 1), 3) for c, n in categories.most_common()},
           "top_self": [(k, round(n / max(total, 1), 3)) for k, n in self_time.most_common(10)]}
    return "\n".join(lines) + "\n", top
