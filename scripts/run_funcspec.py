"""Submit a funcspec to the sandbox's Colonies server as its user, wait for the process to
end, and print its logs (as Colonies holds them) and its final state and output.

    python3 scripts/run_funcspec.py examples/hello.json [--timeout 120]

Reads the server and the user key from COLONIES_SERVER_HOST/PORT, COLONIES_COLONY_NAME and
COLONIES_PRVKEY (what `python3 -m teststack env` exports). Exits 0 when the process succeeded.
With kubectl on the PATH and a KUBECONFIG, it also says which node(s) ran the process's pods.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import time

from colonies_operator.colonies.client import Connection, ServerAddress
from colonies_operator.colonies.models import ProcessState

FINAL = (ProcessState.SUCCESS, ProcessState.FAILED, ProcessState.CANCELLED)


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("spec")
    parser.add_argument("--timeout", type=float, default=120)
    args = parser.parse_args()
    colony = os.environ["COLONIES_COLONY_NAME"]
    with open(args.spec) as f:
        spec = json.load(f)
    spec.setdefault("conditions", {}).setdefault("colonyname", colony)  # as the colonies CLI does
    address = ServerAddress(os.environ["COLONIES_SERVER_HOST"], int(os.environ["COLONIES_SERVER_PORT"]))
    async with Connection(address) as connection:
        user = connection.client(os.environ["COLONIES_PRVKEY"])
        process = await user.submit(spec)
        print(f"submitted {args.spec} as process {process.processid}", flush=True)
        deadline = time.monotonic() + args.timeout
        # a failure's state lands before its errors (two separate updates on the server)
        while (process.state not in FINAL or (process.state is ProcessState.FAILED and not process.errors)) \
                and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            process = await user.get_process(process.processid)
        print("--- logs (from Colonies) ---")
        for entry in await user.get_all_logs(colony, process.processid):
            sys.stdout.write(entry.message)
        print("--- result ---")
        print(f"state:  {process.state.name}")
        if process.output:
            print(f"output: {json.dumps(list(process.output))}")
        if process.errors:
            print("errors:\n  " + "\n  ".join(process.errors))
        if process.state not in FINAL:
            print(f"(still {process.state.name} after {args.timeout:.0f}s)")
        nodes = nodes_that_ran(process.processid)
        if nodes:
            print(f"ran on: {nodes}")
        return 0 if process.state is ProcessState.SUCCESS else 1


def nodes_that_ran(process_id: str) -> str:
    """The nodes of the process's pods (the operator labels them with the id's first 20 hex)."""
    kubectl = shutil.which("kubectl")
    if not kubectl or not os.environ.get("KUBECONFIG"):
        return ""
    r = subprocess.run([kubectl, "get", "pods", "--all-namespaces", "-l", f"colonyos.io/process={process_id[:20]}",
                        "-o", "jsonpath={range .items[*]}{.spec.nodeName} {end}"],
                       capture_output=True, text=True, timeout=30)
    return " ".join(sorted(set(r.stdout.split()))) if r.returncode == 0 else ""


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
