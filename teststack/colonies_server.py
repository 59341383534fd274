"""A real Colonies server (v1.9.12) on loopback, with a colony and a user ready for tests.

Every port is chosen explicitly: the server embeds an etcd whose defaults (2379/2380, relay
2381) would clash with the Kubernetes etcd or a second stack. Keys come from the server's own
`colonies security generate`, so teststack needs no crypto of its own.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from teststack import procs, versions
from teststack.state import ColoniesInfo, PostgresInfo

if TYPE_CHECKING:
    from teststack.state import StackState

HOST = "127.0.0.1"
COLONY_NAME = "dev"
USER_NAME = "tester"


@dataclass(frozen=True)
class Key:
    prvkey: str
    id: str


def _cli() -> str:
    return str(versions.binary("colonies"))


def generate_key() -> Key:
    """A fresh secp256k1 key and its Colonies id, from `colonies security generate`.

    The CLI logs the pair as a logrus line on stderr: `... Id=<64 hex> PrvKey=<64 hex>`.
    """
    r = subprocess.run([_cli(), "security", "generate"], capture_output=True, text=True, check=True)
    out = r.stdout + r.stderr
    m_id = re.search(r"\bId=([0-9a-f]{64})\b", out)
    m_key = re.search(r"\bPrvKey=([0-9a-f]{64})\b", out)
    if not (m_id and m_key):
        raise RuntimeError(f"cannot parse `colonies security generate` output: {out!r}")
    return Key(prvkey=m_key.group(1), id=m_id.group(1))


def server_env(pg: PostgresInfo, port: int, server: Key, colony_name: str) -> dict[str, str]:
    """What the server reads from its environment (the env overrides flags for the DB settings)."""
    return {
        "TZ": "UTC",  # required: the DB layer refuses to connect without it
        "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
        "COLONIES_DB_HOST": "127.0.0.1", "COLONIES_DB_PORT": str(pg.port),
        "COLONIES_DB_USER": pg.user, "COLONIES_DB_PASSWORD": pg.password,
        "COLONIES_DB_TYPE": "postgresql", "COLONIES_DB_TIMESCALEDB": "false",
        "COLONIES_SERVER_ID": server.id, "COLONIES_SERVER_PRVKEY": server.prvkey,
        "COLONIES_SERVER_HOST": HOST, "COLONIES_SERVER_PORT": str(port), "COLONIES_SERVER_HTTP_PORT": str(port),
        "COLONIES_TLS": "false", "COLONIES_COLONY_NAME": colony_name,
        "COLONIES_EXCLUSIVE_ASSIGN": "true", "COLONIES_ALLOW_EXECUTOR_REREGISTER": "true",
        "COLONIES_RETENTION": "false", "COLONIES_SERVER_PROFILER": "false", "COLONIES_VERBOSE": "false",
        "COLONIES_CRON_CHECKER_PERIOD": "1000", "COLONIES_GENERATOR_CHECKER_PERIOD": "1000",
    }


def client_env(c: ColoniesInfo) -> dict[str, str]:
    """Environment for the `colonies` CLI (and pycolonies-style tools) talking to this server."""
    return {
        "COLONIES_SERVER_HOST": c.host, "COLONIES_SERVER_PORT": str(c.port), "COLONIES_TLS": "false",
        "COLONIES_COLONY_NAME": c.colony_name,
        "COLONIES_COLONY_ID": c.colony_id, "COLONIES_COLONY_PRVKEY": c.colony_prvkey,
        "COLONIES_PRVKEY": c.user_prvkey, "COLONIES_ID": c.user_id,
        "TZ": "UTC",
    }


def _run_cli(args: list[str], env: dict[str, str]) -> str:
    r = subprocess.run([_cli(), *args, "--insecure"], capture_output=True, text=True,
                       env=dict(os.environ) | env, timeout=60)
    if r.returncode != 0:
        raise RuntimeError(f"colonies {' '.join(args)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r.stdout + r.stderr


def health_check(host: str, port: int) -> procs.HttpCheck:
    return procs.HttpCheck(f"http://{host}:{port}/health")


def start(run_dir: Path, pg: PostgresInfo, colony_name: str = COLONY_NAME) -> tuple[procs.Proc, ColoniesInfo]:
    port, client, peer, relay = (procs.free_port() for _ in range(4))
    server, colony, user = generate_key(), generate_key(), generate_key()
    etcd_name = "colonies-it"
    etcd_dir = run_dir / "colonies-etcd"
    argv = [
        _cli(), "server", "start", "--initdb", "--insecure",
        "--port", str(port),
        "--etcdname", etcd_name, "--etcdhost", HOST,
        "--etcdclientport", str(client), "--etcdpeerport", str(peer), "--relayport", str(relay),
        "--initial-cluster", f"{etcd_name}={HOST}:{peer}:{relay}:{port}",
        "--etcddatadir", str(etcd_dir),
    ]
    proc = procs.start("colonies-server", argv, run_dir / "logs" / "colonies-server.log",
                       env=server_env(pg, port, server, colony_name), cwd=run_dir)
    c = ColoniesInfo(host=HOST, port=port, colony_name=colony_name, server_prvkey=server.prvkey,
                     server_id=server.id, colony_prvkey=colony.prvkey, colony_id=colony.id, user_name=USER_NAME,
                     user_prvkey=user.prvkey, user_id=user.id, etcd_name=etcd_name, etcd_client_port=client,
                     etcd_peer_port=peer, relay_port=relay, etcd_data_dir=str(etcd_dir))
    procs.wait_http(health_check(HOST, port), timeout=90, what="colonies server", proc=proc)
    # The CLI insists on the whole client environment (colony name, own key) for every verb,
    # even for `colony add`, which is signed with the server key.
    env = client_env(c) | {"COLONIES_SERVER_PRVKEY": server.prvkey}
    _run_cli(["colony", "add", "--name", colony_name, "--colonyid", colony.id], env)
    _run_cli(["user", "add", "--name", USER_NAME, "--email=", "--phone=", "--userid", user.id], env)
    return proc, c


def listening_ports(pid: int) -> set[int]:
    """TCP ports a process listens on (from `ss -ltnp`), to prove no default port is used."""
    r = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True)
    ports: set[int] = set()
    for line in r.stdout.splitlines():
        if f"pid={pid}," in line:
            local = line.split()[3]
            ports.add(int(local.rsplit(":", 1)[1]))
    return ports


def restart_colonies(state: StackState) -> StackState:
    """Stop the server by pid and start it again on the same ports, DB and etcd data.

    `--initdb` is dropped: the tables exist, and the server id is already in the DB.
    Returns the new state (also written to state.json).
    """
    from teststack import state as st

    old = state.proc("colonies-server")
    proc = procs.restart(old, [a for a in old.argv if a != "--initdb"])
    procs.wait_http(health_check(state.colonies.host, state.colonies.port), timeout=90,
                    what="colonies server (restart)", proc=proc)
    st.record_proc(Path(state.run_dir), proc)
    new = state.with_proc(proc)
    st.save(new)
    return new
