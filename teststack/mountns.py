"""Launch a daemon in a mount namespace of its own, where paths of the machine are covered
(files bind-mounted over them, overlays over directories) without the machine seeing any of it.

`unshare --mount --propagation unchanged`: a mount point the host shares (the kubelet's root
dir) stays shared, so what the daemon mounts there reaches the host and the other daemons.
Each mount that holds a covered path (`/`, `/proc`, or whatever `/run` or `/var` is on) is
made private first, so the covers themselves stay inside on any host, shared mounts or not.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path

COVERED_TREES = ("/var", "/run")  # a run dir below these would be hidden by their overlays


def launcher(argv: Sequence[str], *, binds: Mapping[str, Path] | None = None,
             overlays: Mapping[str, Path] | None = None) -> list[str]:
    """argv that runs `argv` with each bind (target -> file) and overlay (directory -> where its
    upper and work dirs live) in place. What the daemon writes below an overlaid directory
    lands in that upper dir, never on the machine."""
    binds, overlays = dict(binds or {}), dict(overlays or {})
    q = shlex.quote
    script = ["set -e"]
    for target in [*overlays, *binds]:
        script.append(f'mount --make-private "$(findmnt -n -o TARGET --target {q(target)})"')
    for target, base in overlays.items():
        upper, work = q(str(base / "upper")), q(str(base / "work"))
        script += [f"mkdir -p {upper} {work}",
                   f"mount -t overlay overlay -o lowerdir={q(target)},upperdir={upper},workdir={work} {q(target)}"]
    script += [f"mount --bind {q(str(src))} {q(dst)}" for dst, src in binds.items()]
    script.append('exec "$@"')
    return ["unshare", "--mount", "--propagation", "unchanged", "--", "sh", "-c", "; ".join(script),
            Path(argv[0]).name, *argv]


def check_run_dir(run: Path) -> None:
    for tree in COVERED_TREES:
        if run.resolve().is_relative_to(tree):
            raise RuntimeError(f"a stack with a real node cannot live under {tree} (its daemons see an overlay "
                               f"there): choose another run dir than {run}")
