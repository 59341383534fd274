"""Debian packages the stack needs, installed with apt-get when they are missing.

The test machines are fresh Debian bookworm and we are root there (CI too), so the stack
installs what it uses instead of asking a person to.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from teststack import progress

LOG = Path(tempfile.gettempdir()) / "colonies-operator-apt.log"


def install(packages: Sequence[str], why: str) -> None:
    """`apt-get install` the packages (after `apt-get update`); nothing when the list is empty."""
    if not packages:
        return
    names = " ".join(packages)
    if os.geteuid() != 0:
        raise RuntimeError(f"{why} needs {names} and we are not root: apt-get install {names}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    progress.say(f"installing {names} from Debian (apt-get) for {why} ...")
    progress.run_logged(["apt-get", "update"], label="apt-get update", log=LOG, env=env)
    progress.run_logged(["apt-get", "install", "-y", "--no-install-recommends", *packages],
                        label=f"apt-get install {names}", log=LOG, env=env)
