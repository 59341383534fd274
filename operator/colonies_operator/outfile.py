"""`/colonies/out.json`: what a program writes there becomes the process output.

The output sidecar (`colonies-operator output`, a native sidecar of the Job's pod, from the
operator's image) waits until the program has ended, reads the file, and prints it to its
own log in a frame the operator reads back through the pod log API once the pod is done:

    colonies-output: none                        no out.json: the termination message counts
    colonies-output: <n> bytes sha256 <hex>      then base64 lines, then
    colonies-output: end

A file over the executor's bound is refused, not cut: the sidecar ends non-zero with a
message that says so, and the process fails with it. The frame's checksum lets the operator
tell a whole output from a log the kubelet rotated or cut.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

HEADER = "colonies-output:"
LINE = 48 * 1024  # base64 characters per line: under the operator's 64 KiB log line pieces


class OutputError(Exception):
    pass


def frame(data: bytes | None) -> Iterator[str]:
    """The lines that carry `data` (None: there was no file)."""
    if data is None:
        yield f"{HEADER} none"
        return
    yield f"{HEADER} {len(data)} bytes sha256 {hashlib.sha256(data).hexdigest()}"
    text = base64.b64encode(data).decode()
    for i in range(0, len(text), LINE):
        yield text[i:i + LINE]
    yield f"{HEADER} end"


@dataclass(frozen=True)
class Found:
    data: bytes | None  # None: the program wrote no out.json


def unframe(lines: Iterable[str]) -> Found:
    """What `frame` carried, from the sidecar's log lines; OutputError when the frame is not
    whole (no header, cut short, or bytes that do not match their checksum)."""
    header: list[str] | None = None
    chunks: list[str] = []
    for line in lines:
        if header is None:
            if line.startswith(HEADER):
                words = line[len(HEADER):].split()
                if words == ["none"]:
                    return Found(None)
                header = words
            continue
        if line.startswith(HEADER):
            if line[len(HEADER):].split() != ["end"]:
                raise OutputError(f"unexpected line in the output frame: {line[:80]!r}")
            return Found(_checked(header, "".join(chunks)))
        chunks.append(line.strip())
    raise OutputError("the output sidecar's log holds no whole output frame" if header is None
                      else "the output frame was cut short")


def _checked(header: list[str], text: str) -> bytes:
    if len(header) != 4 or header[1] != "bytes" or header[2] != "sha256":
        raise OutputError(f"bad output frame header: {' '.join(header)[:80]!r}")
    data = base64.b64decode(text)
    if len(data) != int(header[0]) or hashlib.sha256(data).hexdigest() != header[3]:
        raise OutputError(f"the output frame holds {len(data)} bytes that do not match its header")
    return data


def read(path: Path, max_bytes: int) -> bytes | None:
    """The file's bytes (None when there is none); OutputError when it is over `max_bytes`, or
    a symbolic link (it would be read in the sidecar's filesystem, not the program's)."""
    try:
        size = path.lstat().st_size
    except FileNotFoundError:
        return None
    if path.is_symlink() or not path.is_file():
        raise OutputError(f"{path} is not a regular file (a symbolic link?): write the output itself there")
    if size > max_bytes:
        raise OutputError(f"{path} is {size} bytes, over this executor's limit of {max_bytes} bytes "
                          "(spec.output.maxBytes): write less, or put the data in CFS and return a reference")
    with os.fdopen(os.open(path, os.O_RDONLY | os.O_NOFOLLOW), "rb") as f:
        return f.read(max_bytes)
