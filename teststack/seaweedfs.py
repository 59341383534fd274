"""A real S3 server for CFS: SeaweedFS (`weed server` with its S3 gateway), on loopback.

One process runs a master, a volume server, a filer and the S3 gateway, every port chosen
here (SeaweedFS' defaults, 8080/8333/8888/9333 and their gRPC twins, would clash with other
servers), its local sockets in the run dir, and telemetry off: it would otherwise report to
seaweedfs.com. One identity may do everything, another only read; tests make a bucket each.
Pods on the real node reach the gateway through the node's relay, like the apiserver.
"""

from __future__ import annotations

import json
import secrets
import socket
from pathlib import Path

from teststack import procs, versions
from teststack.state import S3Info

HOST = "127.0.0.1"
REGION = "us-east-1"


def _config(info: S3Info) -> dict:
    def identity(name: str, access: str, secret: str, actions: list[str]) -> dict:
        return {"name": name, "credentials": [{"accessKey": access, "secretKey": secret}], "actions": actions}
    return {"identities": [
        identity("teststack", info.access_key, info.secret_key, ["Admin", "Read", "Write", "List", "Tagging"]),
        # may read but not write: a push with these keys fails (tests of a failed push)
        identity("reader", info.reader_access_key, info.reader_secret_key, ["Read", "List"]),
    ]}


def argv(run_dir: Path, info: S3Info, ports: dict[str, int]) -> list[str]:
    data = run_dir / "seaweedfs"
    return [
        str(versions.weed()), "server", f"-dir={data}", f"-ip={HOST}", f"-ip.bind={HOST}",
        "-master.telemetry=false", "-master.volumeSizeLimitMB=64", "-volume.max=32",
        f"-master.port={ports['master']}", f"-master.port.grpc={ports['master_grpc']}",
        f"-volume.port={ports['volume']}", f"-volume.port.grpc={ports['volume_grpc']}",
        "-filer", f"-filer.port={ports['filer']}", f"-filer.port.grpc={ports['filer_grpc']}",
        f"-filer.localSocket={data}/filer.sock",
        "-s3", f"-s3.port={info.port}", f"-s3.port.grpc={ports['s3_grpc']}", "-s3.port.iceberg=0",
        "-s3.port.lance=0", f"-s3.config={data}/s3.json", f"-s3.localSocket={data}/s3.sock",
    ]


def start(run_dir: Path) -> tuple[procs.Proc, S3Info]:
    data = run_dir / "seaweedfs"
    data.mkdir(parents=True, exist_ok=True)
    info = S3Info(host=HOST, port=procs.free_port(), region=REGION, access_key=secrets.token_hex(10),
                  secret_key=secrets.token_hex(20), data_dir=str(data), reader_access_key=secrets.token_hex(10),
                  reader_secret_key=secrets.token_hex(20))
    (data / "s3.json").write_text(json.dumps(_config(info)))
    ports = {name: procs.free_port() for name in
             ("master", "master_grpc", "volume", "volume_grpc", "filer", "filer_grpc", "s3_grpc")}
    proc = procs.start("seaweedfs", argv(run_dir, info, ports), run_dir / "logs" / "seaweedfs.log", cwd=run_dir)
    procs.wait_until(lambda: ready(info), timeout=90, what="seaweedfs s3 gateway", proc=proc)
    return proc, info


def ready(info: S3Info) -> tuple[bool, str]:
    """Whether the gateway answers S3: an unsigned request gets S3's XML refusal once the
    filer behind it is up (before, the port may be open but nothing answers)."""
    try:
        with socket.create_connection((info.host, info.port), timeout=2) as conn:
            conn.sendall(b"GET / HTTP/1.1\r\nHost: " + f"{info.host}:{info.port}".encode() + b"\r\nConnection: close\r\n\r\n")
            reply = conn.recv(4096)
    except OSError as exc:
        return False, str(exc)
    return reply.startswith(b"HTTP/1.1 "), reply[:60].decode(errors="replace")
