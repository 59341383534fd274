"""The pure parts of the stack's real node: OCI image layouts, containerd's and the kubelet's
configuration, the CNI network, slots, and the kubelet's launcher."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
import tomllib
from pathlib import Path

import pytest

from teststack import containerd, hostnet, images, kubelet, kubeproxy, mountns, versions
from teststack.podlogs import container_output


def members(tar_bytes: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        return {m.name: m for m in tar.getmembers()}


def read(tar_bytes: bytes, name: str) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        f = tar.extractfile(name)
        assert f is not None
        return f.read()


def blob(archive: bytes, digest: str) -> bytes:
    data = read(archive, "blobs/sha256/" + digest.split(":", 1)[1])
    assert "sha256:" + hashlib.sha256(data).hexdigest() == digest  # content-addressed
    return data


def test_an_oci_layout_names_the_image_and_addresses_every_blob_by_its_digest():
    image = images.Image("docker.io/library/demo:1", (images.Entry("bin/tool", 0o755, b"#!/bin/sh\n"),),
                         {"Cmd": ["tool"]})
    archive = images.oci_layout(image)
    assert json.loads(read(archive, "oci-layout")) == {"imageLayoutVersion": "1.0.0"}
    [entry] = json.loads(read(archive, "index.json"))["manifests"]
    assert entry["annotations"]["io.containerd.image.name"] == "docker.io/library/demo:1"
    assert entry["platform"] == {"architecture": images.goarch(), "os": "linux"}
    manifest = json.loads(blob(archive, entry["digest"]))
    config = json.loads(blob(archive, manifest["config"]["digest"]))
    [layer_ref] = manifest["layers"]
    layer = gzip.decompress(blob(archive, layer_ref["digest"]))
    assert config["rootfs"]["diff_ids"] == ["sha256:" + hashlib.sha256(layer).hexdigest()]
    assert config["config"] == {"Cmd": ["tool"]} and config["os"] == "linux"
    files = members(layer)
    assert files["bin"].isdir() and files["bin/tool"].mode == 0o755
    assert read(layer, "bin/tool") == b"#!/bin/sh\n"


def test_the_same_image_gives_the_same_bytes():
    image = images.Image("x:1", (images.Entry("a/b", 0o644, b"data"),))
    assert images.oci_layout(image) == images.oci_layout(image)


def test_busybox_applets_are_relative_symlinks_to_the_one_binary():
    applets = ["/bin/sh", "/usr/bin/env", "/sbin/ip", "/bin/busybox"]
    entries = {e.path: e for e in images.busybox_entries(b"ELF", applets)}
    assert entries["bin/busybox"].data == b"ELF"
    assert entries["bin/sh"].link == "../bin/busybox"
    assert entries["usr/bin/env"].link == "../../bin/busybox"
    assert entries["sbin/ip"].link == "../bin/busybox"
    assert b"root:x:0:0" in entries["etc/passwd"].data and entries["tmp"].mode == 0o1777


def test_the_containerd_config_is_valid_toml_with_its_own_paths_and_the_required_cri_settings(tmp_path):
    paths = containerd.Paths(tmp_path)
    cfg = tomllib.loads(containerd.toml(containerd.config(paths, "/tsnode3")))
    assert cfg == containerd.config(paths, "/tsnode3")
    assert (cfg["root"], cfg["state"], cfg["grpc"]["address"]) == (
        str(tmp_path / "root"), str(tmp_path / "state"), str(tmp_path / "containerd.sock"))
    assert cfg["cgroup"]["path"] == "/tsnode3/runtime"
    cri = cfg["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["restrict_oom_score_adj"] is True and cri["netns_mounts_under_state_dir"] is True
    assert cri["sandbox_image"] == versions.PAUSE_IMAGE
    assert cri["cni"]["conf_dir"] == str(tmp_path / "net.d") and cri["cni"]["bin_dir"] == "/usr/lib/cni"
    runc = cri["containerd"]["runtimes"]["runc"]["options"]
    assert runc == {"SystemdCgroup": False, "Root": str(tmp_path / "state" / "runc")}
    assert cri["containerd"]["snapshotter"] == "overlayfs"


def test_the_cni_network_is_a_bridge_on_the_slots_subnet_without_masquerade(tmp_path):
    conf = containerd.cni_conflist(hostnet.Slot(5), tmp_path)
    bridge, portmap, loopback = conf["plugins"]
    assert (bridge["bridge"], bridge["isGateway"], bridge["ipMasq"]) == ("cni0", True, False)
    assert bridge["ipam"]["ranges"] == [[{"subnet": "10.213.5.0/24", "gateway": "10.213.5.1"}]]
    assert bridge["ipam"]["dataDir"] == str(tmp_path)
    assert (portmap["type"], loopback["type"], conf["name"]) == ("portmap", "loopback", "teststack-5")


def test_slots_are_disjoint_and_a_subnet_that_meets_a_machine_network_is_refused():
    assert [hostnet.Slot(i).subnet for i in (0, 1)] == ["10.213.0.0/24", "10.213.1.0/24"]
    slot = hostnet.Slot(2)
    assert (slot.link, slot.link_net, slot.host_ip, slot.node_ip) == ("tsnode2", "10.214.2.0/30", "10.214.2.1",
                                                                      "10.214.2.2")
    assert not hostnet.overlaps(slot.link_net, [slot.subnet, hostnet.Slot(3).link_net])
    assert hostnet.overlaps("10.213.1.0/24", ["10.0.0.0/8"])
    assert hostnet.overlaps("10.213.1.0/24", ["10.213.1.7/32"])
    assert not hostnet.overlaps("10.213.1.0/24", ["192.0.2.0/24", "10.213.2.0/24", "fd00::/64"])


def test_a_link_the_kernel_removes_while_it_is_being_released_counts_as_released(monkeypatch):
    # The node's namespace is torn down asynchronously after its last process and mount go,
    # taking both ends of the pair with it: the link can vanish between the look and the delete.
    slot = hostnet.Slot(1)
    links = {slot.link}

    def ip(*args, check=True):
        links.clear()  # the kernel got there first
        raise RuntimeError(f"ip {' '.join(args)} failed: Cannot find device \"{slot.link}\"")
    monkeypatch.setattr(hostnet, "our_links", lambda: set(links))
    monkeypatch.setattr(hostnet, "_ip", ip)
    hostnet._undo(slot)


def test_a_link_that_stays_after_a_failed_delete_is_an_error(monkeypatch):
    slot = hostnet.Slot(1)

    def ip(*args, check=True):
        raise RuntimeError("ip link del failed: Operation not permitted")
    monkeypatch.setattr(hostnet, "our_links", lambda: {slot.link})
    monkeypatch.setattr(hostnet, "_ip", ip)
    with pytest.raises(RuntimeError, match="not permitted"):
        hostnet._undo(slot)


def test_the_kubelet_config_keeps_the_machine_and_the_node_apart(tmp_path):
    cfg = kubelet.config(node_ip="10.214.0.2", port=1234, healthz_port=5678, runtime_socket=tmp_path / "c.sock",
                         cgroup_root="/tsnode0", ca_cert="/pki/ca.crt", pod_logs=tmp_path / "logs")
    assert (cfg["failCgroupV1"], cfg["cgroupDriver"], cfg["oomScoreAdj"]) == (False, "cgroupfs", 0)
    assert cfg["containerRuntimeEndpoint"] == f"unix://{tmp_path / 'c.sock'}"
    # the node's own loopback is not the machine's: it listens on its end of the pair
    assert (cfg["address"], cfg["port"], cfg["healthzBindAddress"], cfg["readOnlyPort"]) == ("10.214.0.2", 1234,
                                                                                           "10.214.0.2", 0)
    assert cfg["authentication"]["anonymous"] == {"enabled": False}
    assert cfg["authentication"]["x509"] == {"clientCAFile": "/pki/ca.crt"}
    assert cfg["registerWithTaints"] == [kubelet.NODE_TAINT] and "staticPodPath" not in cfg


def test_the_kubelet_runs_in_its_own_mount_namespace_over_files_holding_the_sysctls_it_wants(tmp_path):
    binds = kubelet.write_sysctl_files(tmp_path / "sysctl")
    assert {dst: src.read_text() for dst, src in binds.items()} == {
        "/proc/sys/vm/overcommit_memory": "1\n", "/proc/sys/kernel/panic": "10\n",
        "/proc/sys/kernel/panic_on_oops": "1\n"}
    argv = mountns.launcher(["/bin/kubelet", "--v=2"], binds=binds, overlays={"/var": tmp_path / "var"})
    assert argv[:5] == ["unshare", "--mount", "--propagation", "unchanged", "--"]
    script = argv[7]
    # every mount holding a covered path is private before anything is mounted over it
    last_private = script.rindex("--make-private")
    assert script.index("findmnt -n -o TARGET --target /proc/sys/kernel/panic") < last_private
    assert last_private < script.index("mount -t overlay") < script.index("mount --bind")
    assert f"mount --bind {binds['/proc/sys/kernel/panic']} /proc/sys/kernel/panic" in script
    assert f"lowerdir=/var,upperdir={tmp_path / 'var' / 'upper'}" in script and script.endswith('exec "$@"')
    assert argv[8:] == ["kubelet", "/bin/kubelet", "--v=2"]


def test_containerd_resolves_no_name_so_no_pull_leaves_the_machine(tmp_path):
    containerd.write_config(containerd.Paths(tmp_path), hostnet.Slot(0))
    argv = containerd.launcher(containerd.Paths(tmp_path))
    assert (tmp_path / "resolv.conf").read_text().splitlines()[-1] == "nameserver 127.0.0.1"
    assert f"mount --bind {tmp_path / 'resolv.conf'} /etc/resolv.conf" in argv[7]
    assert "lowerdir=/run," in argv[7] and "lowerdir=/var," in argv[7]


def test_kube_proxy_serves_services_in_the_nodes_namespace_and_changes_no_sysctl(tmp_path):
    cfg = kubeproxy.config(kubeconfig=tmp_path / "kc", node_name="real-node-0", node_ip="10.214.0.2",
                           healthz_port=4321, cluster_cidr="10.213.0.0/24")
    assert (cfg["mode"], cfg["nftables"]["masqueradeAll"]) == ("nftables", True)
    assert set(cfg["conntrack"].values()) <= {0, "0s"}  # zero: it leaves every conntrack sysctl alone
    assert cfg["nodePortAddresses"] == ["10.214.0.2/32"] and cfg["healthzBindAddress"] == "10.214.0.2:4321"
    argv = hostnet.in_netns(tmp_path / "netns", kubeproxy.argv("/bin/kube-proxy", tmp_path / "c.yaml", tmp_path / "o"))
    assert argv[:3] == ["nsenter", f"--net={tmp_path / 'netns'}", "--"] and argv[3] == "unshare"
    assert "lowerdir=/run," in argv[10]


def test_a_run_dir_under_an_overlaid_tree_is_refused(tmp_path):
    mountns.check_run_dir(tmp_path)
    with pytest.raises(RuntimeError, match="cannot live under /var"):
        mountns.check_run_dir(Path("/var/tmp/stack"))


def test_podlogs_reads_doubled_dollars_as_a_kubelet_does():
    assert container_output({"command": ["/bin/sh", "-c", "echo cost $$5"]}) == ["cost $5"]

