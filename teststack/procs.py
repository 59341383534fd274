"""Daemon processes of the stack: free ports, start with a log file, stop by pid, wait for health.

Every process is started in its own session, so stopping it can also kill whatever it forked
(SIGKILL to its process group) without touching anything else on the machine. A process is
identified by its pid *and* its start time (from /proc), so a recycled pid is never signalled.
"""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

# ColonyOS' embedded etcd defaults to these; a port picker that hands them out would make a
# stray default-configured etcd (or a second stack) collide with ours.
_RESERVED_PORTS = frozenset({2379, 2380, 2381})
_handed_out: set[int] = set()
_ports_lock = threading.Lock()
_children: dict[int, subprocess.Popen] = {}  # our own children, so they are reaped, not zombies
_exit_codes: dict[int, int] = {}  # pid → exit code of a child that ended and was reaped


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now, never 2379-2381, never the same one twice per process."""
    with _ports_lock:
        for _ in range(200):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            if port not in _RESERVED_PORTS and port not in _handed_out:
                _handed_out.add(port)
                return port
    raise RuntimeError("could not find a free loopback port")


@dataclass(frozen=True)
class Proc:
    """One started daemon, with everything needed to find it, stop it or start it again."""

    name: str
    pid: int
    start_ticks: int  # field 22 of /proc/<pid>/stat: tells our process from a recycled pid
    argv: tuple[str, ...]
    log: str
    env: tuple[tuple[str, str], ...] = ()  # only the variables we set on top of os.environ
    user: str | None = None  # run as this OS user (PostgreSQL refuses root)
    stop_signal: int = int(signal.SIGTERM)
    cwd: str | None = None
    stop_timeout: float = 10.0  # grace after stop_signal before SIGKILL of the group

    def to_json(self) -> dict:
        return {"name": self.name, "pid": self.pid, "start_ticks": self.start_ticks,
                "argv": list(self.argv), "log": self.log, "env": [list(kv) for kv in self.env],
                "user": self.user, "stop_signal": self.stop_signal, "cwd": self.cwd,
                "stop_timeout": self.stop_timeout}

    @classmethod
    def from_json(cls, d: Mapping) -> Proc:
        return cls(name=d["name"], pid=int(d["pid"]), start_ticks=int(d["start_ticks"]),
                   argv=tuple(d["argv"]), log=d["log"], env=tuple((k, v) for k, v in d.get("env", [])),
                   user=d.get("user"), stop_signal=int(d.get("stop_signal", signal.SIGTERM)), cwd=d.get("cwd"),
                   stop_timeout=float(d.get("stop_timeout", 10.0)))


def _stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks) of a pid, or None when there is no such process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    rest = raw[raw.rindex(")") + 2:].split()  # the command name may hold spaces and parentheses
    return rest[0], int(rest[19])


def _reap(pid: int) -> None:
    child = _children.get(pid)
    if child is not None and child.poll() is not None:
        _exit_codes[pid] = child.returncode
        _children.pop(pid, None)


def exit_code(proc: Proc) -> int | None:
    """How a child we started ended (negative: killed by that signal); None while it runs."""
    _reap(proc.pid)
    return _exit_codes.get(proc.pid) if not alive(proc) else None


def alive(proc: Proc) -> bool:
    """True while the very process we started runs (not a zombie, not a recycled pid)."""
    _reap(proc.pid)
    st = _stat(proc.pid)
    return st is not None and st[0] not in ("Z", "X") and st[1] == proc.start_ticks


def start(name: str, argv: Sequence[str], log: Path, *, env: Mapping[str, str] | None = None,
          user: str | None = None, cwd: Path | None = None, stop_signal: int = signal.SIGTERM,
          stop_timeout: float = 10.0) -> Proc:
    """Start a daemon in its own session with stdout and stderr appended to `log`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    extra = dict(env or {})
    full_env = dict(os.environ) | extra
    with log.open("ab") as out:
        out.write(f"\n==== {time.strftime('%Y-%m-%dT%H:%M:%S')} $ {' '.join(argv)}\n".encode())
        out.flush()
        p = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                             env=full_env, cwd=cwd, start_new_session=True, user=user, group=user,
                             extra_groups=[] if user else None, close_fds=True)
    _children[p.pid] = p
    st = _stat(p.pid)
    if st is None:  # exited already; report it with its log
        p.wait()
        raise RuntimeError(f"{name} exited at once (code {p.returncode}):\n{log_tail(log)}")
    return Proc(name=name, pid=p.pid, start_ticks=st[1], argv=tuple(argv), log=str(log),
                env=tuple(sorted(extra.items())), user=user, stop_signal=int(stop_signal),
                cwd=str(cwd) if cwd else None, stop_timeout=stop_timeout)


def restart(proc: Proc, argv: Sequence[str] | None = None) -> Proc:
    """Stop `proc` and start it again with the same command (or `argv`), env, user and log."""
    stop(proc)
    return start(proc.name, argv if argv is not None else proc.argv, Path(proc.log), env=dict(proc.env),
                 user=proc.user, cwd=Path(proc.cwd) if proc.cwd else None, stop_signal=proc.stop_signal,
                 stop_timeout=proc.stop_timeout)


def stop(proc: Proc, timeout: float | None = None) -> None:
    """Ask the process to stop, wait, then SIGKILL its whole process group. Safe if it is gone."""
    timeout = proc.stop_timeout if timeout is None else timeout
    if not alive(proc):
        return
    try:
        os.kill(proc.pid, proc.stop_signal)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(proc):
            break
        time.sleep(0.05)
    # The group id is the pid (start_new_session); kill it even when the leader has exited,
    # so a forked helper cannot outlive it. Only our own session can have this group id.
    try:
        if alive(proc) or _group_exists(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    deadline = time.monotonic() + 5
    while alive(proc) and time.monotonic() < deadline:
        time.sleep(0.05)
    _reap(proc.pid)


def _group_exists(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def log_tail(log: Path | str, lines: int = 30) -> str:
    try:
        text = Path(log).read_text(errors="replace")
    except FileNotFoundError:
        return "(no log file)"
    return "\n".join(text.splitlines()[-lines:])


class NotReady(RuntimeError):
    """A component did not become healthy in time; the message carries the tail of its log."""


@dataclass
class HttpCheck:
    """How to reach a health URL: plain HTTP, TLS without verification, or TLS with client cert."""

    url: str
    verify: bool | str = False  # False, or the path of a CA bundle
    cert: tuple[str, str] | None = None
    expect_body: str | None = None  # e.g. "ok"; None: any 200 will do
    headers: dict[str, str] = field(default_factory=dict)

    def ok(self, timeout: float = 2.0) -> tuple[bool, str]:
        verify: bool | ssl.SSLContext = self.verify if isinstance(self.verify, bool) else True
        if isinstance(self.verify, str) or self.cert:
            verify = _ssl_ctx(self.verify if isinstance(self.verify, str) else None, self.cert)
        try:
            with httpx.Client(verify=verify, timeout=timeout, trust_env=False) as c:
                r = c.get(self.url, headers=self.headers)
        except (httpx.HTTPError, OSError, ssl.SSLError) as e:
            return False, f"{type(e).__name__}: {e}"
        if r.status_code != 200:
            return False, f"HTTP {r.status_code}: {r.text[:200]}"
        if self.expect_body is not None and self.expect_body not in r.text:
            return False, f"unexpected body: {r.text[:200]}"
        return True, "ok"


def _ssl_ctx(ca: str | None, cert: tuple[str, str] | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=ca) if ca else ssl._create_unverified_context()  # noqa: S323
    if cert:
        ctx.load_cert_chain(*cert)
    return ctx


def wait_until(predicate: Callable[[], bool | tuple[bool, str]], *, timeout: float, what: str,
               proc: Proc | None = None, interval: float = 0.1) -> float:
    """Poll `predicate` until true; return the seconds it took. Raise NotReady with the log tail.

    The predicate may return (ok, detail) so the error says what it last saw. If `proc` dies
    while we wait, fail at once instead of waiting out the deadline.
    """
    began = time.monotonic()
    deadline = began + timeout
    detail = ""
    while True:
        try:
            res = predicate()
        except Exception as e:  # a failing probe is "not yet"; keep its message
            res = (False, f"{type(e).__name__}: {e}")
        ok, detail = res if isinstance(res, tuple) else (bool(res), detail)
        if ok:
            return time.monotonic() - began
        if proc is not None and not alive(proc):
            raise NotReady(f"{what}: process {proc.name} (pid {proc.pid}) exited; last check: {detail}\n"
                           f"--- tail of {proc.log} ---\n{log_tail(proc.log)}")
        if time.monotonic() >= deadline:
            tail = f"\n--- tail of {proc.log} ---\n{log_tail(proc.log)}" if proc else ""
            raise NotReady(f"{what}: not ready after {timeout:.0f}s; last check: {detail}{tail}")
        time.sleep(interval)


def wait_http(check: HttpCheck, *, timeout: float, what: str, proc: Proc | None = None) -> float:
    """Wait until `check.url` answers 200 (and the expected body, if any)."""
    return wait_until(check.ok, timeout=timeout, what=f"{what} ({check.url})", proc=proc, interval=0.2)


def tcp_open(host: str, port: int, timeout: float = 2.0) -> tuple[bool, str]:
    """Whether something accepts connections at host:port, and if not, why."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True, "ok"
    except OSError as e:
        return False, str(e)


def wait_tcp(port: int, *, timeout: float, what: str, proc: Proc | None = None) -> float:
    return wait_until(lambda: tcp_open("127.0.0.1", port, 1.0), timeout=timeout, what=f"{what} (127.0.0.1:{port})",
                      proc=proc)


def rss_kib(pid: int) -> int:
    """Resident set size of a process in KiB (0 if gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except FileNotFoundError:
        pass
    return 0
