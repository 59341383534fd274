"""A private, throw-away PostgreSQL for the Colonies server (Debian's binaries, run as `postgres`).

The Colonies server v1.9.12 only speaks PostgreSQL. PostgreSQL refuses to run as root, so the
data directory belongs to the `postgres` OS user, which must be able to reach it: the run dir
and its ancestors get the traverse bit for others. Durability is switched off for speed.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import stat
import subprocess
import tempfile
from pathlib import Path

from teststack import apt, procs
from teststack.state import PostgresInfo

PG_USER = "postgres"
PG_PASSWORD = "colonies-test"  # auth is trust on loopback; the server still wants a password set
_UNIX_SOCKET_MAX = 100  # sun_path is 108 bytes, and ".s.PGSQL.<port>" is appended


def pg_bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return Path(found[-1]).parent if found else None


def ensure_installed() -> Path:
    """Install Debian's postgresql when its binaries are missing."""
    bindir = pg_bin_dir()
    if bindir is None:
        apt.install(["postgresql"], "the Colonies server's database")
        bindir = pg_bin_dir()
    if bindir is None:
        raise RuntimeError(f"postgresql installed but no initdb under /usr/lib/postgresql; see {apt.LOG}")
    return bindir


def _let_user_traverse(path: Path) -> None:
    """Give others the x bit on `path` and every ancestor, so `postgres` can reach its data dir.

    Only the traverse bit: nothing becomes listable or readable that was not before.
    """
    for p in [path, *path.parents]:
        mode = p.stat().st_mode
        if not mode & stat.S_IXOTH:
            os.chmod(p, stat.S_IMODE(mode) | stat.S_IXOTH)


def start(run_dir: Path, port: int | None = None) -> tuple[procs.Proc, PostgresInfo]:
    bindir = ensure_installed()
    base = run_dir / "pg"
    data = base / "data"
    if base.exists():
        shutil.rmtree(base)
    base.mkdir(parents=True)
    _let_user_traverse(run_dir)
    socket_dir = base / "sock"
    if len(str(socket_dir)) > _UNIX_SOCKET_MAX - 20:  # a deep run dir: keep the socket short
        socket_dir = Path(tempfile.mkdtemp(prefix="colonies-pg-"))
    socket_dir.mkdir(exist_ok=True)
    for d in (base, socket_dir):
        shutil.chown(d, PG_USER, PG_USER)
    _let_user_traverse(socket_dir)
    log = run_dir / "logs" / "postgres.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    pwfile = base / "pwfile"
    pwfile.write_text(PG_PASSWORD + "\n")
    shutil.chown(pwfile, PG_USER, PG_USER)
    res = subprocess.run(
        [str(bindir / "initdb"), "-D", str(data), "-U", PG_USER, f"--pwfile={pwfile}", "--auth=trust",
         "--encoding=UTF8", "--locale=C", "--no-sync"],
        user=PG_USER, group=PG_USER, extra_groups=[], cwd=base, capture_output=True, text=True)
    pwfile.unlink()
    if res.returncode != 0:
        raise RuntimeError(f"initdb failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
    port = port or procs.free_port()
    argv = [str(bindir / "postgres"), "-D", str(data), "-p", str(port),
            "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={socket_dir}",
            "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
            "-c", "max_connections=300", "-c", "shared_buffers=64MB", "-c", "log_min_messages=warning"]
    # SIGINT is PostgreSQL's "fast" shutdown; SIGTERM ("smart") waits for clients to leave.
    proc = procs.start("postgres", argv, log, user=PG_USER, cwd=base, stop_signal=signal.SIGINT)
    pg = PostgresInfo(port=port, data_dir=str(data), socket_dir=str(socket_dir), user=PG_USER, password=PG_PASSWORD)
    procs.wait_until(lambda: is_ready(pg), timeout=60, what="postgres", proc=proc)
    return proc, pg


def is_ready(pg: PostgresInfo) -> tuple[bool, str]:
    bindir = pg_bin_dir()
    assert bindir is not None
    r = subprocess.run([str(bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(pg.port), "-U", pg.user],
                       capture_output=True, text=True)
    return r.returncode == 0, (r.stdout + r.stderr).strip()
