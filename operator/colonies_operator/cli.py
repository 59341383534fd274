"""The `colonies-operator` command: `run` the operator, `check` that it can run here, print its `version`;
and `cfs pull` / `cfs push`, the CFS steps of a process's Job (they run in its pod, not in the operator)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import colonies_operator
from colonies_operator import config as cfg
from colonies_operator import memory

if TYPE_CHECKING:
    from colonies_operator import leadership

SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def _own_namespace() -> str | None:
    if os.environ.get("POD_NAMESPACE"):
        return os.environ["POD_NAMESPACE"]
    if SERVICE_ACCOUNT_NAMESPACE.exists():
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
    return None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="colonies-operator", description=colonies_operator.__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("version", help="print the operator's version")
    run = commands.add_parser("run", help="run the operator (kopf) against the current cluster")
    check = commands.add_parser("check", help="check the settings, the cluster and the Colonies server, "
                                              "and say what is wrong")
    for command in (run, check):
        command.add_argument("-n", "--namespace", action="append", default=[],
                             help="serve ColonyExecutors in this namespace (repeatable; env "
                                  "COLONIES_OPERATOR_NAMESPACES, comma-separated; default: the operator's own "
                                  "namespace)")
        command.add_argument("-A", "--all-namespaces", action="store_true", default=None,
                             help="serve every namespace (needs a ClusterRole)")
        command.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster credentials, else KUBECONFIG)")
    cfs = commands.add_parser("cfs", help="CFS steps of a process's Job (run by its init container and sidecar)")
    steps = cfs.add_subparsers(dest="step", required=True)
    steps.add_parser("pull", help="fetch the funcspec's snapshots and sync its directories in, then exit")
    steps.add_parser("push", help="wait until stopped, then sync the funcspec's directories out")
    commands.add_parser("output", help="the output sidecar of a process's Job: wait until stopped, then hand "
                                       "/colonies/out.json to the operator through this container's log")
    run.add_argument("--liveness", help="liveness endpoint URL (default http://0.0.0.0:8080/healthz; '' disables)")
    run.add_argument("--metrics-port", type=int, help="port of the Prometheus /metrics endpoint (default 9090; 0 disables)")
    run.add_argument("--leader-election", action="store_true", default=None,
                     help="serve only while holding the Lease, so several replicas can run: one serves, the others "
                          "stand by (env COLONIES_OPERATOR_LEADER_ELECTION; the Lease: COLONIES_OPERATOR_LEASE_*)")
    run.add_argument("--log-level", default=os.environ.get("COLONIES_OPERATOR_LOG_LEVEL", "INFO"),
                     choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return parser


async def _serve(settings: cfg.OperatorSettings, kubeconfig: str | None, elector: leadership.Elector | None = None) -> None:
    import kopf

    from colonies_operator import handlers  # noqa: F401  (registers the handlers)

    # No stop_flag: kopf would wait on it in a task that nothing ends, and then give such
    # "hung" tasks 5 s at every stop, delaying the release of the Lease by that much.
    await kopf.operator(
        namespaces=list(settings.namespaces),
        clusterwide=settings.all_namespaces,
        liveness_endpoint=settings.liveness_endpoint or None,
        standalone=settings.standalone,
        memo=kopf.Memo(operator_settings=settings, kubeconfig=kubeconfig, elector=elector),
    )


async def _run(settings: cfg.OperatorSettings, kubeconfig: str | None, lease: leadership.LeaseSettings | None = None) -> None:
    """Serve at once; or, with a Lease, stand by until leading (the liveness endpoint answers
    meanwhile, so the standby is not restarted), serve while leading, release it when stopped."""
    if lease is None:
        await _serve(settings, kubeconfig)
        return
    from colonies_operator import leadership
    from colonies_operator.runtime.kube import KubeApi

    kube = await KubeApi.connect(kubeconfig)
    elector = leadership.Elector(kube, lease)
    standby = await leadership.serve_standby_health(settings.liveness_endpoint, elector)
    logging.getLogger(__name__).info("campaigning for the Lease %s/%s as %s", lease.namespace, lease.name,
                                     elector.identity)

    async def serve() -> None:
        if standby is not None:
            await standby.cleanup()  # kopf's liveness endpoint takes the port over
        await _serve(settings, kubeconfig, elector)

    try:
        await leadership.lead(elector, serve, lost=_stop_now)
    finally:
        await kube.close()


def _stop_now(exc: Exception) -> None:
    """Leadership lost: end the process now, without the graceful stop (which would go on
    serving for seconds next to the new leader); the Deployment restarts it as a standby."""
    logging.getLogger(__name__).critical("%s: stopping at once, a standby takes over and adopts what runs", exc)
    logging.shutdown()
    sys.stdout.flush()
    os._exit(3)


def _cfs(step: str) -> int:
    """Run one CFS step; its outcome is the exit code and the termination message."""
    from colonies_operator.cfs import steps

    # What the pull writes, the program (often another user, without capabilities) must be
    # able to change: files 0666 and directories 0777, in a volume only this pod mounts.
    os.umask(0)

    async def run() -> str:
        settings = steps.StepSettings.from_env()
        if step == "pull":
            return await steps.pull(settings)
        await steps.wait_for_stop(os.environ.get(steps.ENV_READY, ""))
        return await steps.push(settings)

    try:
        steps.report(asyncio.run(run()))
        return 0
    except Exception as exc:  # every failure becomes the message the operator fails the process with
        steps.report(f"cfs {step}: {exc}")
        return 1


def _output() -> int:
    """Hand out.json over once the program has ended; a file over the bound is refused."""
    from colonies_operator import outfile
    from colonies_operator.cfs import steps

    asyncio.run(steps.wait_for_stop(os.environ.get("COLONIES_OUTPUT_READY", "")))
    try:
        data = outfile.read(Path(os.environ.get("COLONIES_OUTPUT_FILE", "/colonies/out.json")),
                            int(os.environ.get("COLONIES_OUTPUT_MAX_BYTES") or 1 << 20))
    except (outfile.OutputError, OSError) as exc:
        steps.report(f"output: {exc}")
        return 1
    for line in outfile.frame(data):
        print(line, flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "version":
        print(f"colonies-operator {colonies_operator.__version__}")
        return 0
    if args.command == "cfs":
        return _cfs(args.step)
    if args.command == "output":
        return _output()
    if args.command == "check":
        from colonies_operator import checks

        return checks.main(os.environ, checks.Scope(tuple(args.namespace), args.all_namespaces, args.kubeconfig,
                                                    _own_namespace()))
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    memory.keep_large_blocks_returnable()  # before any connection is opened
    logging.getLogger("kubernetes_asyncio").setLevel(logging.WARNING)
    for noisy in ("httpx", "httpcore", "aiohttp", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    settings = cfg.OperatorSettings.from_env(
        namespaces=tuple(args.namespace) or None, all_namespaces=args.all_namespaces, liveness_endpoint=args.liveness,
        metrics_port=args.metrics_port, leader_election=args.leader_election)
    if not settings.namespaces and not settings.all_namespaces:
        own = _own_namespace()
        if own is None:
            print("colonies-operator: say which namespace to serve (--namespace NS or --all-namespaces); "
                  "outside a pod there is no default", file=sys.stderr)
            return 2
        settings = cfg.OperatorSettings.from_env(namespaces=(own,), liveness_endpoint=args.liveness,
                                                 metrics_port=args.metrics_port, leader_election=args.leader_election)
    lease = None
    if settings.leader_election:
        from colonies_operator import leadership

        try:
            lease = leadership.LeaseSettings.from_env(os.environ, _own_namespace())
        except ValueError as exc:
            print(f"colonies-operator: {exc}", file=sys.stderr)
            return 2
    if args.kubeconfig:
        os.environ["KUBECONFIG"] = args.kubeconfig  # kopf's own login reads it too
    asyncio.run(_run(settings, args.kubeconfig, lease))
    return 0


if __name__ == "__main__":
    sys.exit(main())
