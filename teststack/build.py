"""Builds every binary of the stack once, from the Go module proxy, into the versioned cache.

A step whose binaries are all present is skipped, so a warm run costs nothing. Kubernetes and
etcd cannot be `go install`ed (their go.mod files carry replace directives), so each gets a
throw-away wrapper module generated here: it requires the release and points every staging
module at its published version.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from collections.abc import Callable
from pathlib import Path
from typing import Any

from teststack import images, images_operator, progress, versions as v


@dataclass(frozen=True)
class Step:
    name: str
    produces: tuple[str, ...]
    run: Callable[[Path, Path, dict[str, str]], None]  # (bin dir, work dir, env)
    home: Callable[[], Path] | None = None  # where its products go, when not the shared bin dir

    def dest(self, bin_dir: Path) -> Path:
        return self.home() if self.home else bin_dir


def _go_env(work: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(CGO_ENABLED="0", GOFLAGS="-trimpath", GOTOOLCHAIN=env.get("GOTOOLCHAIN", "local"))
    env.pop("GOBIN", None)
    return env


def _log(work: Path) -> Path:
    return work / "build.log"


def _go_install(pkg: str, out_name: str, ldflags: str = "-s -w") -> Callable[[Path, Path, dict[str, str]], None]:
    def run(bin_dir: Path, work: Path, env: dict[str, str]) -> None:
        gobin = work / f"gobin-{out_name}"
        gobin.mkdir(parents=True, exist_ok=True)
        progress.run_logged(["go", "install", "-ldflags", ldflags, pkg], label=f"go install {pkg}",
                            log=_log(work), env=env | {"GOBIN": str(gobin)})
        built = gobin / pkg.rsplit("/", 1)[-1].split("@")[0]
        shutil.move(str(built), bin_dir / out_name)
    return run


def _wrapper_build(name: str, tools: list[str], outputs: str, ldflags: str = "-s -w", tags: str = "",
                   replaces: Callable[[dict[str, str]], list[str]] | None = None):
    """Build `tools` (pkg@version) through a throw-away module that requires them as tools.

    Needed where `go install pkg@v` refuses: a go.mod with replace directives (Kubernetes,
    etcd), or a module whose version list the proxy will not serve (colonies: `go install`
    asks for it to look up deprecations, and gets 403).
    """
    def run(bin_dir: Path, work: Path, env: dict[str, str]) -> None:
        mod = work / f"{name}-wrapper"
        shutil.rmtree(mod, ignore_errors=True)
        mod.mkdir(parents=True)
        log = _log(work)
        progress.run_logged(["go", "mod", "init", f"local/{name}bins"], label=f"{name} wrapper", log=log, env=env, cwd=mod)
        if replaces:
            progress.run_logged(["go", "mod", "edit", *replaces(env)], label=f"{name} replaces", log=log, env=env, cwd=mod)
        progress.run_logged(["go", "get", "-tool", *tools], label=f"{name} module downloads", log=log, env=env, cwd=mod)
        pkgs = [t.split("@")[0] for t in tools]
        argv = ["go", "build", "-ldflags", ldflags, "-o", outputs, *pkgs]
        if tags:
            argv[2:2] = [f"-tags={tags}"]
        progress.run_logged(argv, label=f"{name} compile", log=log, env=env, cwd=mod)
    return run


def _colonies(bin_dir: Path, work: Path, env: dict[str, str]) -> None:
    # the main package is ./cmd, so `go build -o <dir>/` would name the binary `cmd`
    _wrapper_build("colonies", [f"github.com/colonyos/colonies/cmd@{v.COLONIES}"], str(bin_dir / "colonies"),
                   f"-s -w -X main.BuildVersion={v.COLONIES}")(bin_dir, work, env)


def _etcd(bin_dir: Path, work: Path, env: dict[str, str]) -> None:
    _wrapper_build("etcd", [f"go.etcd.io/etcd/server/v3@{v.ETCD}"], str(bin_dir / "etcd"))(bin_dir, work, env)


def _staging_replaces(env: dict[str, str]) -> list[str]:
    """k8s.io/kubernetes' own go.mod names its staging modules; read it outside any module."""
    with tempfile.TemporaryDirectory() as empty:
        info = subprocess.run(["go", "mod", "download", "-json", f"k8s.io/kubernetes@{v.KUBERNETES}"],
                              cwd=empty, env=env, check=True, capture_output=True, text=True)
    gomod = Path(json.loads(info.stdout)["GoMod"]).read_text()
    staging = re.findall(r"^\s*(k8s\.io/\S+)\s+=>\s+\./staging/", gomod, flags=re.M)
    if not staging:
        raise RuntimeError("found no staging replaces in k8s.io/kubernetes go.mod")
    return [f"-replace={m}={m}@{v.KUBERNETES_STAGING}" for m in staging]


def _kubernetes(bin_dir: Path, work: Path, env: dict[str, str]) -> None:
    minor = v.KUBERNETES.split(".")[1]
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    ld = ["-s", "-w"]  # version stamps: helm and kubectl compare them with the server's /version
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        ld += [f"-X {pkg}.gitVersion={v.KUBERNETES}", f"-X {pkg}.gitMajor=1", f"-X {pkg}.gitMinor={minor}",
               f"-X {pkg}.gitTreeState=clean", f"-X {pkg}.buildDate={stamp}"]
    # Only the missing ones: a cache from before kubelet was added relinks nothing it has.
    wanted = [c for c in v.KUBERNETES_COMMANDS if not (bin_dir / c).exists()] or list(v.KUBERNETES_COMMANDS)
    cmds = [f"k8s.io/kubernetes/cmd/{c}@{v.KUBERNETES}" for c in wanted]
    _wrapper_build("k8s", cmds, str(bin_dir) + "/", " ".join(ld), tags="selinux,notest",
                   replaces=_staging_replaces)(bin_dir, work, env)


KWOK_CRDS: tuple[str, ...] = ("kwok.x-k8s.io_logs.yaml", "kwok.x-k8s.io_clusterlogs.yaml")


def _kwok_crds(bin_dir: Path, work: Path, env: dict[str, str]) -> None:
    """Copy kwok's Logs/ClusterLogs CRDs next to the binaries.

    kwok only watches these kinds (`--enable-crds`), it never installs them; the stack applies
    them from here so a cluster can get per-pod log rules at run time.
    """
    modcache = subprocess.run(["go", "env", "GOMODCACHE"], env=env, check=True,
                              capture_output=True, text=True).stdout.strip()
    src = Path(modcache) / f"sigs.k8s.io/kwok@{v.KWOK}/kustomize/crd/bases"
    if not all((src / f).exists() for f in KWOK_CRDS):
        with tempfile.TemporaryDirectory() as empty:  # outside any module: no go.mod needed
            progress.run_logged(["go", "mod", "download", f"sigs.k8s.io/kwok@{v.KWOK}"],
                                label="kwok module download", log=_log(work), env=env, cwd=Path(empty))
    dest = bin_dir / "kwok-crds"
    dest.mkdir(parents=True, exist_ok=True)
    for f in KWOK_CRDS:
        shutil.copyfile(src / f, dest / f)


def _seaweedfs(bin_dir: Path, work: Path, env: dict[str, str]) -> None:
    # SeaweedFS' go.mod replaces go-bip39 with a fork; a wrapper module must say so too.
    _wrapper_build("seaweedfs", [f"github.com/seaweedfs/seaweedfs/weed@{v.SEAWEEDFS}"], str(bin_dir / "weed"),
                   replaces=lambda _env: ["-replace=github.com/tyler-smith/go-bip39=github.com/cosmos/go-bip39@v1.0.0"],
                   )(bin_dir, work, env)


STEPS: tuple[Step, ...] = (
    Step("colonies server", ("colonies",), _colonies),
    Step("kwok", ("kwok",), _go_install(f"sigs.k8s.io/kwok/cmd/kwok@{v.KWOK}", "kwok")),
    Step("kwok crds", tuple(f"kwok-crds/{f}" for f in KWOK_CRDS), _kwok_crds),
    Step("helm", ("helm",), _go_install(f"helm.sh/helm/v3/cmd/helm@{v.HELM}", "helm",
                                        f"-s -w -X helm.sh/helm/v3/internal/version.version={v.HELM}")),
    Step("etcd", ("etcd",), _etcd),
    Step("kubernetes", v.KUBERNETES_COMMANDS, _kubernetes),
    Step("seaweedfs (S3)", ("weed",), _seaweedfs, home=v.weed_dir),
    # Its go.mod has no replace directives: a plain `go install`. Its CRDs are applied at run
    # time from the module this downloads (teststack/kueue.py).
    Step("kueue", ("kueue",), _go_install(f"sigs.k8s.io/kueue/cmd/kueue@{v.KUEUE}", "kueue",
                                          f"-s -w -X sigs.k8s.io/kueue/pkg/version.GitVersion={v.KUEUE}"),
         home=v.kueue_dir),
)


def missing() -> list[str]:
    """Everything the cache lacks: binaries, other step products (e.g. kwok-crds/...), images."""
    products = [(s.dest(v.bin_dir()), p) for s in STEPS for p in s.produces]
    return [p for home, p in products if not (home / p).exists()] + images.missing(v.images_dir())


def ensure_built() -> Path:
    """Build whatever is missing; return the directory that holds every binary.

    Two test runs on one machine may start at once (two checkouts, CI and a developer):
    one builds while the other waits on a lock in the cache, then finds everything built."""
    bin_dir = v.bin_dir()
    if not _todo(bin_dir) and not images.missing(v.images_dir()):
        return bin_dir
    v.cache_root().mkdir(parents=True, exist_ok=True)
    with open(v.cache_root() / ".build.lock", "w") as lock:
        if _locked_elsewhere(lock):
            progress.say("another test run is building the stack binaries; waiting for it")
            fcntl.flock(lock, fcntl.LOCK_EX)
        return _build(bin_dir)


def _todo(bin_dir: Path) -> list[Step]:
    return [s for s in STEPS if not all((s.dest(bin_dir) / p).exists() for p in s.produces)]


def _locked_elsewhere(lock: Any) -> bool:
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True


def _build(bin_dir: Path) -> Path:
    todo = _todo(bin_dir)
    if images.missing(v.images_dir()):
        began = time.monotonic()
        progress.say(f"[build] real-node images {images.missing(v.images_dir())} into {v.images_dir()} ...")
        images.build(v.images_dir(), _log(v.cache_root() / "build"))
        progress.say(f"[build] real-node images done in {time.monotonic() - began:.1f}s")
    if not todo:
        return bin_dir
    if shutil.which("go") is None:
        raise RuntimeError("Go is needed to build the test stack (go install from the module proxy)")
    bin_dir.mkdir(parents=True, exist_ok=True)
    work = v.cache_root() / "build"
    work.mkdir(parents=True, exist_ok=True)
    env = _go_env(work)
    progress.say(f"building {len(todo)} of {len(STEPS)} components into {bin_dir} "
                 f"(first time only; full log: {_log(work)})")
    for i, step in enumerate(todo, 1):
        began = time.monotonic()
        progress.say(f"[build {i}/{len(todo)}] {step.name} ...")
        step.dest(bin_dir).mkdir(parents=True, exist_ok=True)
        step.run(step.dest(bin_dir), work, env)
        progress.say(f"[build {i}/{len(todo)}] {step.name} done in {int(time.monotonic() - began)}s")
    if missing():
        raise RuntimeError(f"build finished but these binaries are missing: {missing()}")
    return bin_dir


def ensure_images() -> str:
    """The operator image's Python base (debootstrap, a minute or two, first time only), under
    its own lock (teststack/images_operator.py). The operator image itself follows the sources,
    so it is built when something asks for it: `images_operator.operator_image()`."""
    return images_operator.ensure_base()


if __name__ == "__main__":
    ensure_built()
    ensure_images()
