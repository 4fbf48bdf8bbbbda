"""A real Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager) for tests and the
demo, run as local processes without Docker, plus a test-only pod runner standing in for a kubelet.
See devcluster/README.md."""

from devcluster.controlplane import ControlPlane, binary_paths, pod_log_path, tools_bin_dir

__all__ = ["ControlPlane", "binary_paths", "pod_log_path", "tools_bin_dir"]
