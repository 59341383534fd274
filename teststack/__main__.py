"""`python3 -m teststack {build,start,stop,status,env} [--run-dir DIR]`

build   build the binaries and the operator image's base into the versioned cache (first time ~30 min)
start   start the stack in the run dir, or reuse the healthy one already there
stop    stop every process the run dir records
status  health per component; exit status 1 if any is down
env     shell `export` lines for KUBECONFIG, the colonies CLI and PATH: eval "$(... env)"
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from teststack import build, stack, versions


def default_run_dir() -> Path:
    """The sandbox's run dir: $COLONIES_SANDBOX_DIR, else `sandbox` in the build cache."""
    return Path(os.environ.get("COLONIES_SANDBOX_DIR") or versions.cache_root() / "sandbox")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m teststack", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n".join(__doc__.split("\n")[2:]))
    ap.add_argument("command", choices=("build", "start", "stop", "status", "env"))
    ap.add_argument("--run-dir", type=Path, default=None,
                    help=f"where the stack keeps its state, data and logs (default {default_run_dir()})")
    a = ap.parse_args(argv)
    run = (a.run_dir or default_run_dir()).resolve()

    if a.command == "build":
        print(build.ensure_built())
        build.ensure_images()
        return 0
    if a.command == "start":
        stack.start(run)
        print(f"stack running; state in {run / 'state.json'}")
        print(f'use it from a shell: eval "$(python3 -m teststack env --run-dir {shlex.quote(str(run))})"')
        return 0
    if a.command == "stop":
        n = stack.stop_run_dir(run)
        print(f"stopped {n} running process(es) recorded in {run}")
        return 0
    state = stack.load_state(run)
    if state is None:
        print(f"no stack recorded in {run} (start one with: python3 -m teststack start)", file=sys.stderr)
        return 1
    if a.command == "status":
        results = stack.status(state)
        width = max(len(n) for n in results)
        for name, (ok, detail) in results.items():
            pid = state.pids.get(name, "")
            print(f"{name:<{width}}  {'healthy' if ok else 'DOWN':<7}  pid {pid:<8} {detail}")
        return 0 if all(ok for ok, _ in results.values()) else 1
    if a.command == "env":
        for k, v in state.env().items():
            if k == "PATH":  # let the shell expand its own PATH
                print(f'export PATH={shlex.quote(state.bin_dir)}:"$PATH"')
            else:
                print(f"export {k}={shlex.quote(v)}")
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
