"""Integration tests run against the real dev control plane (devcluster/)."""

from devcluster.pytest_plugin import (
    control_plane,
    kubectl,
    namespace,
    pod_output,
    wait_for_fixture,
)

# Fixtures are re-exported rather than listed in pytest_plugins, which pytest only allows in the
# rootdir's conftest.
__all__ = ["control_plane", "kubectl", "namespace", "pod_output", "wait_for_fixture"]
