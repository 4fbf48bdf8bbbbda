"""`python -m devcluster up|down|env|build`: a detached dev cluster for `make cluster-*`."""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from devcluster.controlplane import HERE, ControlPlane, default_state_dir, tools_bin_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devcluster", description=__doc__)
    parser.add_argument("command", choices=["up", "down", "env", "build"])
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=default_state_dir(),
        help="default: $ADF_DEVCLUSTER_DIR or ~/.cache/adf/devcluster-state",
    )
    args = parser.parse_args(argv)
    cp = ControlPlane.load(args.state_dir)
    if args.command == "build":
        for script in ("build.sh", "install-tools.sh"):
            subprocess.run(["bash", str(HERE / script)], check=True)
    elif args.command == "up":
        if cp.running():
            print(f"devcluster: already running ({args.state_dir})", file=sys.stderr)
        else:
            cp.stop()  # leftovers of a cluster that died half-way
            started = time.monotonic()
            cp = ControlPlane(state_dir=args.state_dir, attached=False)
            cp.start()
            print(
                f"devcluster: ready in {time.monotonic() - started:.1f} s; logs in {cp.log_dir}",
                file=sys.stderr,
            )
        print_env(cp)
    elif args.command == "down":
        cp.stop()
        print("devcluster: stopped", file=sys.stderr)
    else:
        if not cp.running():
            print("devcluster: not running; `make cluster-up` first", file=sys.stderr)
            return 1
        print_env(cp)
    return 0


def print_env(cp: ControlPlane) -> None:
    print(f"export KUBECONFIG={cp.kubeconfig_path}")
    print(f"export PATH={tools_bin_dir()}:$PATH")


if __name__ == "__main__":
    sys.exit(main())
