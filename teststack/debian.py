"""What the stack takes from Debian: the mirror apt already uses, and packages installed when missing.

The mirror is read from apt's own sources at run time, so a machine behind a local mirror or
a snapshot keeps using it; nothing here names a mirror.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

from teststack import progress

APT_SOURCES = Path("/etc/apt/sources.list")
APT_SOURCES_DIR = Path("/etc/apt/sources.list.d")
_FETCHABLE = ("http://", "https://", "file:/")  # what debootstrap can fetch from (not cdrom:, mirror+...)


def _one_line_entries(text: str) -> Iterable[tuple[str, str, list[str]]]:
    """(uri, suite, components) of each `deb [options] uri suite components...` line."""
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line.startswith("deb "):
            continue
        words = line.split()[1:]
        if words and words[0].startswith("["):  # options: `[arch=amd64 signed-by=...]`
            while words and not words[0].endswith("]"):
                words.pop(0)
            words = words[1:]
        if len(words) >= 2:
            yield words[0], words[1], words[2:]


def _deb822_entries(text: str) -> Iterable[tuple[str, str, list[str]]]:
    """(uri, suite, components) of each `Types: deb` stanza of a .sources file (deb822)."""
    stanzas: list[dict[str, str]] = [{}]
    key = ""
    for raw in text.splitlines():
        if raw.startswith("#"):
            continue
        if not raw.strip():
            stanzas.append({})
        elif raw[0].isspace() and key:  # a folded continuation of the previous field
            stanzas[-1][key] += " " + raw.strip()
        elif ":" in raw:
            key, _, value = raw.partition(":")
            key = key.strip().lower()
            stanzas[-1][key] = value.strip()
    for s in stanzas:
        if "deb" not in s.get("types", "").split() or s.get("enabled", "yes").lower() == "no":
            continue
        for uri in s.get("uris", "").split():
            for suite in s.get("suites", "").split():
                yield uri, suite, s.get("components", "").split()


def mirror(suite: str, sources: Mapping[str, str]) -> str:
    """The first fetchable mirror whose `main` serves `suite`, from apt source files (name -> text).

    Only `*.list` (one-line) and `*.sources` (deb822) files count, as for apt itself; a file
    apt ignores (e.g. `x.list.disabled`) is ignored here too.
    """
    for name, text in sources.items():
        if name.endswith(".sources"):
            entries = _deb822_entries(text)
        elif name.endswith(".list"):
            entries = _one_line_entries(text)
        else:
            continue
        for uri, entry_suite, components in entries:
            if entry_suite == suite and "main" in components and uri.startswith(_FETCHABLE):
                return uri
    raise LookupError(f"no apt source serves {suite} main over http(s) or file: in {', '.join(sources) or 'nothing'}")


def machine_mirror(suite: str) -> str:
    """The mirror this machine's apt uses for `suite` (sources.list first, then sources.list.d in order)."""
    files = [APT_SOURCES, *sorted(APT_SOURCES_DIR.glob("*"))] if APT_SOURCES_DIR.is_dir() else [APT_SOURCES]
    return mirror(suite, {str(f): f.read_text(errors="replace") for f in files if f.is_file()})


def ensure_installed(commands: Mapping[str, str]) -> None:
    """apt-get install the package of each command (name -> package) not on PATH.

    We are root on a fresh bookworm in CI; elsewhere, say what to install.
    """
    wanted = sorted({pkg for cmd, pkg in commands.items() if shutil.which(cmd) is None})
    if not wanted:
        return
    if os.geteuid() != 0:
        raise RuntimeError(f"missing {', '.join(wanted)} and we are not root: apt-get install {' '.join(wanted)}")
    log = Path(tempfile.gettempdir()) / "colonies-operator-apt.log"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    progress.say(f"installing {', '.join(wanted)} from Debian (apt-get) ...")
    progress.run_logged(["apt-get", "update"], label="apt-get update", log=log, env=env)
    progress.run_logged(["apt-get", "install", "-y", "--no-install-recommends", *wanted],
                        label=f"apt-get install {' '.join(wanted)}", log=log, env=env)
