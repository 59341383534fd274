"""The real test stack: PostgreSQL, a Colonies server and a Kubernetes control plane
(etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok), built once from
the Go module proxy into a versioned cache and started on free loopback ports, plus one real
node (containerd + runc + CNI + kubelet, teststack/realnode.py) next to the kwok nodes. The
apiserver keeps an audit log of every request in `<run dir>/audit/` (teststack/audit.py)."""
