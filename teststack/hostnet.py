"""The real node's network: a network namespace of its own, joined to the machine by one veth pair.

Slot N of a stack is:
- the veth pair `tsnode<N>` (the machine's end, 10.214.N.1/30) and `eth0` (the node's end,
  10.214.N.2/30: the node's InternalIP), the node's end inside the node's network namespace;
- that namespace, held by a bind mount of its nsfs file in the run dir (no name under /run);
  containerd, the kubelet and kube-proxy run in it, so the CNI bridge, every pod's veth and
  kube-proxy's nftables tables live there and vanish with it;
- the pods' 10.213.N.0/24 on the CNI bridge inside it (gateway 10.213.N.1), routed from the
  machine through the node's end, so tests reach pod addresses;
- cgroup `/tsnode<N>`.

Kernel state is the registry: `ip link add` of the machine's end is the atomic claim of a slot,
so two stacks (two run dirs) never share one, and a stack that died without stopping keeps its
slot until `stop` runs for its run dir. The machine's own settings are never touched: the node
forwards (its namespace's ip_forward), the machine only sends and receives.

The rule: pods may reach their bridge and the machine's end of the pair, nothing beyond. The
node's namespace has no default route: what is not on the bridge or the /30 is unreachable.
Servers of the stack listen on 127.0.0.1; a relay (teststack/relay.py) on the machine's end
passes the apiserver's port on to it (the Colonies server listens on every address).
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

LINK_PREFIX = "tsnode"
POD_NET_PREFIX = "10.213"
LINK_NET_PREFIX = "10.214"
SLOTS = 64
NODE_LINK = "eth0"  # the node's end of the pair, inside its namespace
CNI_BRIDGE = "cni0"  # made by the CNI bridge plugin inside the node's namespace
MACHINE_DIR = Path("/run/teststack-realnode")  # machine-wide: one per machine, not per stack


@dataclass(frozen=True)
class Slot:
    index: int

    @property
    def link(self) -> str:
        """The machine's end of the veth pair."""
        return f"{LINK_PREFIX}{self.index}"

    @property
    def subnet(self) -> str:
        """The pods' addresses."""
        return f"{POD_NET_PREFIX}.{self.index}.0/24"

    @property
    def gateway(self) -> str:
        """The pods' gateway: the CNI bridge, inside the node's namespace."""
        return f"{POD_NET_PREFIX}.{self.index}.1"

    @property
    def link_net(self) -> str:
        return f"{LINK_NET_PREFIX}.{self.index}.0/30"

    @property
    def host_ip(self) -> str:
        """The machine's end: what pods reach of the machine (the relay listens here)."""
        return f"{LINK_NET_PREFIX}.{self.index}.1"

    @property
    def node_ip(self) -> str:
        """The node's end: its InternalIP; the kubelet and kube-proxy listen here."""
        return f"{LINK_NET_PREFIX}.{self.index}.2"

    @property
    def cgroup(self) -> str:
        return f"/{LINK_PREFIX}{self.index}"

    @property
    def network(self) -> str:
        """The CNI network name (it prefixes libcni's result files)."""
        return f"teststack-{self.index}"


def overlaps(subnet: str, taken: Iterable[str]) -> bool:
    """Whether `subnet` overlaps any of the machine's networks (CIDRs or bare addresses)."""
    net = ipaddress.ip_network(subnet)
    for t in taken:
        other = ipaddress.ip_network(t, strict=False)
        if other.version == net.version and other.overlaps(net):
            return True
    return False


def _run(argv: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(argv, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {r.stderr.strip()}")
    return r


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return _run(["ip", *args], check=check)


def in_netns(netns: Path, argv: list[str]) -> list[str]:
    """argv that runs `argv` in the node's network namespace."""
    return ["nsenter", f"--net={netns}", "--", *argv]


def _machine_networks() -> list[str]:
    routes = json.loads(_ip("-j", "-4", "route", "show", "table", "all").stdout or "[]")
    addrs = json.loads(_ip("-j", "-4", "addr").stdout or "[]")
    nets = [r["dst"] for r in routes if r.get("dst") not in (None, "default")]
    nets += [f"{a['local']}/{a['prefixlen']}" for link in addrs for a in link.get("addr_info", [])]
    return nets


def our_links() -> set[str]:
    links = json.loads(_ip("-j", "link", "show", "type", "veth").stdout or "[]")
    return {link["ifname"] for link in links if link["ifname"].startswith(LINK_PREFIX)}


@contextlib.contextmanager
def _machine_lock() -> Iterator[None]:
    MACHINE_DIR.mkdir(parents=True, exist_ok=True)
    with open(MACHINE_DIR / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def make_netns(netns: Path) -> None:
    """A new network namespace held by a bind mount at `netns` (removed by unmounting it)."""
    netns.parent.mkdir(parents=True, exist_ok=True)
    netns.touch()
    _run(["unshare", f"--net={netns}", "true"])


def claim(netns: Path) -> Slot:
    """Claim a free slot for the node whose namespace is held at `netns` and wire it up."""
    with _machine_lock():
        taken = _machine_networks()
        for i in range(SLOTS):
            slot = Slot(i)
            if overlaps(slot.subnet, taken) or overlaps(slot.link_net, taken):
                continue
            peer = f"{slot.link}n"
            if _ip("link", "add", slot.link, "type", "veth", "peer", "name", peer, check=False).returncode != 0:
                continue  # another stack's (or a stale one's) pair: not ours to touch
            try:
                _wire(slot, peer, netns)
            except BaseException:
                _undo(slot)
                raise
            return slot
        raise RuntimeError(f"no free real-node slot: {SLOTS} links {LINK_PREFIX}* exist, or their "
                           f"subnets {POD_NET_PREFIX}.*.0/24 or {LINK_NET_PREFIX}.*.0/30 overlap this "
                           "machine's networks")


def _wire(slot: Slot, peer: str, netns: Path) -> None:
    _ip("link", "set", peer, "netns", str(netns))
    _ip("addr", "add", f"{slot.host_ip}/30", "dev", slot.link)
    _ip("link", "set", slot.link, "up")
    for argv in (["ip", "link", "set", peer, "name", NODE_LINK],
                 ["ip", "addr", "add", f"{slot.node_ip}/30", "dev", NODE_LINK],
                 ["ip", "link", "set", NODE_LINK, "up"], ["ip", "link", "set", "lo", "up"],
                 # the node forwards between its bridge and its end of the pair (its namespace's setting)
                 ["sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"]):
        _run(in_netns(netns, argv))
    _ip("route", "add", slot.subnet, "via", slot.node_ip, "dev", slot.link)


def release(slot: Slot) -> None:
    """Give the slot back (see _undo)."""
    with _machine_lock():
        _undo(slot)


def _undo(slot: Slot) -> None:
    """Remove the machine's end of the pair (its route and the node's end go with it).

    The kernel removes the pair by itself when it tears down the node's namespace, which it
    does asynchronously: a delete that fails because the link has just gone is no failure."""
    if slot.link not in our_links():
        return
    try:
        _ip("link", "del", slot.link)
    except RuntimeError:
        if slot.link in our_links():
            raise
