"""The real node's footprint on the machine: a bridge and a /24 per stack, a cgroup per stack,
`net.ipv4.ip_forward` while any stack's bridge exists, and a rule that keeps pod traffic here.

Slot N of a stack is bridge `tsnode<N>` with gateway 10.213.N.1/24 and cgroup `/tsnode<N>`.
Kernel state is the registry: `ip link add` of the bridge is the atomic claim of a slot, so two
stacks (two run dirs) never share one, and a stack that died without stopping keeps its slot
until `stop` runs for its run dir. The machine's ip_forward, saved when the first slot is
claimed, is restored when the last one is released; a lock file serialises claims and releases.

The rule: pods may reach their bridge and this machine, nothing beyond. A policy-routing rule
sends what enters from the bridge to a table of its own, which knows the slot's /24 and has an
`unreachable` default; addresses of the machine itself are answered by the local table first.
(Routing, not iptables: a rule and a table leave nothing behind once deleted, where iptables
would leave its tables.)
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import subprocess
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

BRIDGE_PREFIX = "tsnode"
NET_PREFIX = "10.213"
SLOTS = 64
MACHINE_DIR = Path("/run/teststack-realnode")  # machine-wide: one per machine, not per stack
IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")
RULE_PRIORITY = "7213"


@dataclass(frozen=True)
class Slot:
    index: int

    @property
    def bridge(self) -> str:
        return f"{BRIDGE_PREFIX}{self.index}"

    @property
    def subnet(self) -> str:
        return f"{NET_PREFIX}.{self.index}.0/24"

    @property
    def gateway(self) -> str:
        return f"{NET_PREFIX}.{self.index}.1"

    @property
    def cgroup(self) -> str:
        return f"/{BRIDGE_PREFIX}{self.index}"

    @property
    def route_table(self) -> str:
        return str(721300 + self.index)

    @property
    def network(self) -> str:
        """The CNI network name (it prefixes libcni's result files)."""
        return f"teststack-{self.index}"


def guard_rule(slot: Slot) -> list[str]:
    """The `ip rule` (without add/del) that routes the slot's pod traffic by its own table."""
    return ["iif", slot.bridge, "lookup", slot.route_table, "priority", RULE_PRIORITY]


def overlaps(subnet: str, taken: Iterable[str]) -> bool:
    """Whether `subnet` overlaps any of the machine's networks (CIDRs or bare addresses)."""
    net = ipaddress.ip_network(subnet)
    for t in taken:
        other = ipaddress.ip_network(t, strict=False)
        if other.version == net.version and other.overlaps(net):
            return True
    return False


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {r.stderr.strip()}")
    return r


def _machine_networks() -> list[str]:
    routes = json.loads(_ip("-j", "-4", "route", "show", "table", "all").stdout or "[]")
    addrs = json.loads(_ip("-j", "-4", "addr").stdout or "[]")
    nets = [r["dst"] for r in routes if r.get("dst") not in (None, "default")]
    nets += [f"{a['local']}/{a['prefixlen']}" for link in addrs for a in link.get("addr_info", [])]
    return nets


def our_bridges() -> set[str]:
    links = json.loads(_ip("-j", "link", "show", "type", "bridge").stdout or "[]")
    return {link["ifname"] for link in links if link["ifname"].startswith(BRIDGE_PREFIX)}


@contextlib.contextmanager
def _machine_lock() -> Iterator[None]:
    MACHINE_DIR.mkdir(parents=True, exist_ok=True)
    with open(MACHINE_DIR / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _save_machine_settings() -> None:
    """Before the first slot: what to restore after the last one (called with the lock held)."""
    saved = MACHINE_DIR / "saved.json"
    if saved.exists():  # left by stacks that all died without stopping: restore it first
        _restore_machine_settings()
    saved.write_text(json.dumps({"ip_forward": IP_FORWARD.read_text().strip()}))


def _restore_machine_settings() -> None:
    saved = MACHINE_DIR / "saved.json"
    if not saved.exists():
        return
    d = json.loads(saved.read_text())
    IP_FORWARD.write_text(d["ip_forward"] + "\n")
    saved.unlink()


def claim() -> Slot:
    """Claim a free slot: create its bridge with the gateway address, allow forwarding, add the rule."""
    with _machine_lock():
        if not our_bridges():
            _save_machine_settings()
        taken = _machine_networks()
        for i in range(SLOTS):
            slot = Slot(i)
            if overlaps(slot.subnet, taken):
                continue
            if _ip("link", "add", slot.bridge, "type", "bridge", check=False).returncode != 0:
                continue  # another stack's (or a stale one's) bridge: not ours to touch
            try:
                _ip("addr", "add", f"{slot.gateway}/24", "dev", slot.bridge)
                _ip("link", "set", slot.bridge, "up")
                IP_FORWARD.write_text("1\n")  # the CNI bridge plugin needs it for its gateway
                _ip("route", "add", "unreachable", "default", "table", slot.route_table)
                _ip("route", "add", slot.subnet, "dev", slot.bridge, "table", slot.route_table)
                _ip("rule", "add", *guard_rule(slot))
            except BaseException:
                _undo(slot)
                raise
            return slot
        raise RuntimeError(f"no free real-node slot: {SLOTS} bridges {BRIDGE_PREFIX}* exist, or their "
                           f"subnets {NET_PREFIX}.*.0/24 overlap this machine's networks")


def release(slot: Slot) -> None:
    """Give the slot back (see _undo)."""
    with _machine_lock():
        _undo(slot)


def _undo(slot: Slot) -> None:
    """Remove the slot's rule, table and bridge; after the last slot, restore the machine."""
    while _ip("rule", "del", *guard_rule(slot), check=False).returncode == 0:
        pass
    _ip("route", "flush", "table", slot.route_table, check=False)
    if slot.bridge in our_bridges():
        _ip("link", "del", slot.bridge)
    if not our_bridges():
        _restore_machine_settings()
