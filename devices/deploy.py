"""Deploy a bundle to a device over the system ``ssh``/``rsync`` and benchmark it there.

``deploy(bundle, SshTarget("jetson@orin.local"), DeployOptions())`` runs, in order:

1. **probe** (one ssh call, POSIX ``sh``): the remote home, PATH, architecture, whether
   ``rsync`` and the remote ``mind-edge`` command exist, whether ``python3 -c "import tensorrt"``
   works, and ``df`` of the target folder (which is created);
2. **copy** (rsync over the same ssh options): into a temporary sibling folder
   ``<dir>/.<name>.tmp-…``, hard-linking unchanged files of a previous deploy
   (``--link-dest``), then swapped into place with two renames, so the device never sees a
   half-copied bundle. Engines, ``engine.json`` and TensorRT caches are machine-local: they are
   never sent, and the ones the device built earlier are carried over (their fingerprints
   refuse them if the model changed);
3. **engine** (only if TensorRT imports on the device): ``mind-edge engine build`` there;
4. **bench**: ``mind-edge bench BUNDLE --json FILE`` there (``--backend trt`` when an engine was
   built: ``--backend trt,ort --precision <the engine's>``), and the JSON is read back (``cat``
   over ssh) for a local table.

ssh always runs with ``BatchMode=yes`` (never a password prompt), ``StrictHostKeyChecking``
(``accept-new`` by default: new hosts are trusted on first use, changed keys are refused) and a
``ConnectTimeout``; the user's ``~/.ssh/config`` applies (aliases, ``ProxyJump``, keys) unless
``config_file`` points elsewhere. Failures are turned into one clear :class:`DeployError`
line: connection refused, unknown host, timeout, key refused, host key changed, no rsync or no
mind-edge on the device, remote disk full (with ``df`` of the remote folder).

Nothing here imports torch, onnx or onnxruntime: this module runs on a bare laptop with the
bundle and ssh/rsync. The transport (the target, its ssh/rsync command lines, quoting, and the
ssh failure messages) is :mod:`mind_edge.devices.ssh`; this module is the plan and its results.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import re
import secrets
import shlex
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mind_edge.devices.bench_table import bench_rows
from mind_edge.devices.ssh import (  # the transport's public names are re-exported (__all__)
    _SSH_FAILURES,
    DEFAULT_CONNECT_TIMEOUT,
    HOST_KEY_POLICIES,
    DeployError,
    DiskFullError,
    Runner,
    SshTarget,
    _default_runner,
    _q,
    _rsync_path,
    _tail,
    check_remote_name,
)
from mind_edge.fileio import atomic_write_json
from mind_edge.runtime.bundle import Bundle  # torch-free; verifies every file's sha256
from mind_edge.runtime.engine_fingerprint import MACHINE_LOCAL_PATTERNS
from mind_edge.runtime.signing import TRUSTED_KEYS_FILE

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_REMOTE_CMD",
    "DEFAULT_REMOTE_DIR",
    "EXCLUDES",
    "HOST_KEY_POLICIES",
    "DeployError",
    "DeployOptions",
    "DeployResult",
    "Deployer",
    "DiskFullError",
    "RemoteInfo",
    "SshTarget",
    "bench_rows",
    "bundle_bytes",
    "check_remote_name",
    "deploy",
]

DEFAULT_REMOTE_DIR = "mind-edge/bundles"  # relative to the remote home
DEFAULT_REMOTE_CMD = "mind-edge"
#: Never sent to a device: engines and TensorRT caches belong to the machine that built them.
EXCLUDES = (*MACHINE_LOCAL_PATTERNS, ".*")  # engines and TensorRT caches are per machine; hidden files stay
SPACE_MARGIN = 1 << 20  # bytes kept free on the device beyond the bundle itself

# ----------------------------------------------------------------------------- options / results


@dataclass(frozen=True)
class DeployOptions:
    remote_dir: str = DEFAULT_REMOTE_DIR  # relative paths are relative to the remote home
    name: str | None = None  # the bundle's folder name on the device (default: the local folder name)
    #: how to run mind-edge there: a name on PATH, a path, or "python3 -m mind_edge.cli"
    remote_cmd: str = DEFAULT_REMOTE_CMD
    remote_python: str = "python3"  # the python whose "import tensorrt" decides whether an engine is built
    engine: str = "auto"  # auto: build if TensorRT imports there; always; never
    fp16: bool = False
    bench: bool = True
    bench_args: tuple[str, ...] = ()
    backend: str | None = None  # bench backend(s); None: "trt,ort" when an engine was built, else bench's default
    check_space: bool = True  # refuse before copying when df says the bundle does not fit

    def __post_init__(self) -> None:
        if self.engine not in ("auto", "always", "never"):
            raise DeployError(f"engine must be auto, always or never, got {self.engine!r}")
        if not self.remote_dir.strip():
            raise DeployError("--dir must not be empty")
        if self.remote_dir.lstrip().startswith("-") or not self.remote_dir.isprintable():
            raise DeployError(
                "--dir must not start with '-' or hold control characters (it would be read as an option "
                "on the device); write ./-name for such a folder"
            )
        if self.name is not None:
            check_remote_name(self.name, "--name")
        try:
            if not shlex.split(self.remote_cmd):
                raise ValueError("empty")
        except ValueError as exc:
            raise DeployError(f"--remote-cmd {self.remote_cmd!r} is not a valid command line ({exc})") from None


@dataclass(frozen=True)
class RemoteInfo:
    """What the probe found on the device."""

    home: str
    path: str
    machine: str
    has_rsync: bool
    cmd: str | None  # resolved remote mind-edge command, None if missing
    tensorrt: str | None  # tensorrt.__version__ there, None if it does not import
    dir_ok: bool
    exists: bool  # a bundle of that name is already there
    disk_total_kb: int | None
    disk_free_kb: int | None
    mount: str | None

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class DeployResult:
    target: str
    remote_bundle: str
    copied_bytes: int
    remote: RemoteInfo
    engine: dict | None = None  # the remote 'engine build --json' summary
    engine_note: str = ""
    backend: str | None = None
    bench: dict | None = None
    bench_file: Path | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "remote_bundle": self.remote_bundle,
            "copied_bytes": self.copied_bytes,
            "remote": self.remote.to_json(),
            "engine": self.engine,
            "engine_note": self.engine_note,
            "backend": self.backend,
            "bench_file": str(self.bench_file) if self.bench_file else None,
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
        }


class Deployer:
    """The deploy steps (see the module docstring); ``runner`` runs one local command (injectable)."""

    def __init__(
        self,
        target: SshTarget,
        options: DeployOptions = DeployOptions(),
        *,
        runner: Runner | None = None,
        check_tools: bool = True,
    ) -> None:
        self.target = target
        self.options = options
        self.runner = runner or _default_runner
        if check_tools:
            for tool, pkg in ((target.ssh, "openssh-client"), (target.rsync, "rsync")):
                if shutil.which(tool) is None:
                    raise DeployError(
                        f"'{tool}' is not installed on this machine; deploy uses the system ssh and "
                        f"rsync (Debian/Ubuntu: sudo apt-get install {pkg})"
                    )

    # -- running things ----------------------------------------------------------------
    def _label(self, what: str) -> str:
        t = self.target.describe()
        return what.format(target=t) if "{target}" in what else f"{what} on {t}"

    def _connection_error(self, stderr: str, what: str) -> DeployError | None:
        t = self.target
        for needle, text in _SSH_FAILURES:
            if needle.lower() in (stderr or "").lower():
                msg = text.format(
                    port=f"port {t.port}" if t.port else "port 22 (or the Port of ~/.ssh/config)",
                    identity=f" (now {t.identity})" if t.identity else "",
                    user=t.user or "the login user",
                    hostname=t.hostname,
                    timeout=t.connect_timeout,
                )
                return DeployError(f"{self._label(what)} failed: {msg}. ssh said: {_tail(stderr, 2)}")
        return None

    def ssh(self, remote_command: str, what: str, *, check: bool = True) -> subprocess.CompletedProcess:
        args = self.target.ssh_command(remote_command)
        log.debug("running %s", shlex.join(args))
        proc = self.runner(args)
        if proc.returncode == 255:
            err = self._connection_error(proc.stderr, what)
            raise err or DeployError(
                f"{self._label(what)} failed: ssh exited with 255: {_tail(proc.stderr) or 'no message'}"
            )
        if check and proc.returncode != 0:
            raise DeployError(
                f"{self._label(what)} failed (exit {proc.returncode}): "
                f"{_tail(proc.stderr) or _tail(proc.stdout) or 'no message'}"
            )
        return proc

    def _cmd(self) -> str:
        """The remote mind-edge command line (its first word quoted, arguments kept)."""
        return " ".join(_q(w) for w in shlex.split(self.options.remote_cmd))

    # -- steps -----------------------------------------------------------------------
    def probe(self, name: str) -> RemoteInfo:
        o = self.options
        first = shlex.split(o.remote_cmd)[0]
        if "/" in first:
            find_cmd = f'if [ -x {_q(first)} ]; then echo "cmd="{_q(first)}; else echo "cmd="; fi'
        else:
            find_cmd = f'c=$(command -v {_q(first)} 2>/dev/null) && echo "cmd=$c" || echo "cmd="'
        script = "\n".join(
            [
                f"d={_q(o.remote_dir)}",
                'echo "mind-edge-probe=1"',
                'echo "home=$HOME"',
                'echo "path=$PATH"',
                'echo "machine=$(uname -m 2>/dev/null)"',
                'if command -v rsync >/dev/null 2>&1; then echo "rsync=1"; else echo "rsync=0"; fi',
                find_cmd,
                f"v=$({_q(o.remote_python)} -c 'import tensorrt; print(tensorrt.__version__)' 2>/dev/null) "
                '&& echo "tensorrt=$v" || echo "tensorrt="',
                'if mkdir -p "$d" 2>/dev/null; then echo "dir=1"; else echo "dir=0"; fi',
                f'if [ -d "$d"/{_q(name)} ]; then echo "exists=1"; else echo "exists=0"; fi',
                'df -Pk "$d" 2>/dev/null | tail -n 1 | awk \'{print "df=" $2 " " $4 " " $6}\'',
            ]
        )
        proc = self.ssh("sh -c " + shlex.quote(script), "connecting to {target}")
        facts: dict[str, str] = {}
        for line in proc.stdout.splitlines():
            if "=" in line:
                k, v = line.split("=", 1)
                facts.setdefault(k.strip(), v.strip())
        if facts.get("mind-edge-probe") != "1":
            raise DeployError(
                f"the device's shell did not answer the probe as expected (stdout: "
                f"{_tail(proc.stdout)!r}, stderr: {_tail(proc.stderr)!r}); deploy needs a POSIX sh on "
                "the device"
            )
        total = free = None
        mount = None
        parts = facts.get("df", "").split()
        if len(parts) >= 3 and parts[0].isdigit() and parts[1].isdigit():
            total, free, mount = int(parts[0]), int(parts[1]), parts[2]
        return RemoteInfo(
            home=facts.get("home", ""),
            path=facts.get("path", ""),
            machine=facts.get("machine", ""),
            has_rsync=facts.get("rsync") == "1",
            cmd=facts.get("cmd") or None,
            tensorrt=facts.get("tensorrt") or None,
            dir_ok=facts.get("dir") == "1",
            exists=facts.get("exists") == "1",
            disk_total_kb=total,
            disk_free_kb=free,
            mount=mount,
        )

    def cleanup(self, path: str) -> None:
        """Best effort: remove a partial copy (never hides the error that led here)."""
        try:
            self.ssh(f"rm -rf {path}", "removing the partial copy", check=False)
        except DeployError as exc:
            log.warning("%s", exc)

    def remote_df(self) -> tuple[int | None, int | None, str | None]:
        script = f"df -Pk {_q(self.options.remote_dir)} 2>/dev/null | tail -n 1 | awk '{{print $2, $4, $6}}'"
        try:
            proc = self.ssh("sh -c " + shlex.quote(script), "checking the free space", check=False)
        except DeployError as exc:
            log.warning("%s", exc)
            return None, None, None
        parts = proc.stdout.split()
        if len(parts) >= 3 and parts[0].isdigit() and parts[1].isdigit():
            return int(parts[0]), int(parts[1]), parts[2]
        return None, None, None

    def _space_message(self, need: int, total_kb, free_kb, mount, prefix: str) -> str:
        where = f"{self.options.remote_dir} on {self.target.describe()}"
        if free_kb is None:
            have = "df could not tell the free space"
        else:
            have = f"{_size(free_kb * 1024)} free of {_size(total_kb * 1024)} on {mount}"
        return (
            f"{prefix} {where}: the bundle needs {_size(need)}, {have}. Free space on the device "
            "(old bundles, engines, logs) or deploy to another --dir"
        )

    def copy(self, bundle: Path, name: str, remote: RemoteInfo, size: int, *, extra: Sequence[Path] = ()) -> str:
        """rsync ``bundle/`` (+ ``extra`` files) into a temporary folder on the device, then swap it into place.

        Every local path is absolute and follows ``--`` (never an option); ``--protect-args`` keeps the
        remote shell from interpreting names; ``--no-perms --chmod=ugo=rwX`` gives the copied files the
        device's umask modes (a runtime service of another user can read them when that umask allows it).
        """
        o, t = self.options, self.target
        d = o.remote_dir.rstrip("/") or "/"
        tmp = f".{name}.tmp-{os.getpid()}-{secrets.token_hex(3)}"
        bundle = Path(bundle).resolve()
        args = [t.rsync, "-a", "--no-owner", "--no-group", "--no-perms", "--chmod=ugo=rwX", "--protect-args"]
        args += [f"--exclude={pat}" for pat in EXCLUDES]
        if remote.exists:
            args.append(f"--link-dest=../{name}")  # relative to the destination: unchanged files are hard links
        args += [
            "-e",
            t.rsync_shell(),
            "--",
            f"{bundle}/",
            *(str(Path(p).resolve()) for p in extra),
            f"{t.host}:{_rsync_path(d)}/{tmp}/",
        ]
        log.debug("running %s", shlex.join(args))
        proc = self.runner(args)
        if proc.returncode != 0:
            self.cleanup(f"{_q(d)}/{_q(tmp)}")
            err = proc.stderr or ""
            enospc = re.search(r"No space left on device|Disk quota exceeded|write failed on .*\(28\)", err)
            conn = self._connection_error(err, "copying the bundle to {target}")
            if conn is not None and not enospc:
                raise conn
            # rsync's own message can be lost when the receiver dies on ENOSPC (exit 11/12/23, empty stderr):
            # whenever the copy failed and df says the bundle cannot fit, it is a full disk
            total, free, mount = self.remote_df() if (enospc or proc.returncode in (11, 12, 23)) else (None, None, None)
            if enospc or (free is not None and free * 1024 < size + SPACE_MARGIN):
                line = next(
                    (ln.strip() for ln in err.splitlines() if re.search(r"No space|quota|\(28\)", ln)),
                    f"rsync exit {proc.returncode}: {_tail(err, 1) or 'no message'}",
                )
                raise DiskFullError(
                    self._space_message(
                        size, total, free, mount, f"the device ran out of disk space while copying ({line}) into"
                    )
                )
            if (
                re.search(
                    r"rsync: (command )?not found|rsync:.*No such file or directory.*\(2\)$|"
                    r"remote command not found",
                    err,
                    re.M,
                )
                or proc.returncode == 127
            ):
                raise DeployError(
                    f"rsync is not installed on {t.describe()}; install it there (sudo apt-get install "
                    f"rsync). rsync said: {_tail(err, 2)}"
                )
            raise DeployError(
                f"copying the bundle to {t.describe()} failed (rsync exit {proc.returncode}): "
                f"{_tail(err) or 'no message'}"
            )
        swap = "\n".join(
            [
                "set -e",
                f"cd {_q(d)}",
                f"new={_q(tmp)}; cur={_q(name)}; old=.{shlex.quote(name)}.old-$$",
                'if [ -d "$cur" ]; then',
                '  for f in "$cur"/engine-*.plan "$cur"/engine.json; do',
                '    if [ -f "$f" ]; then cp -p "$f" "$new"/; fi',
                "  done",
                '  if [ -d "$cur/trt-cache" ]; then cp -Rp "$cur/trt-cache" "$new"/; fi',
                '  mv "$cur" "$old"',
                "fi",
                'mv "$new" "$cur"',
                'rm -rf "$old"',
                'cd "$cur" && pwd',
            ]
        )
        proc = self.ssh("sh -c " + shlex.quote(swap), "moving the copied bundle into place", check=False)
        if proc.returncode != 0:
            self.cleanup(f"{_q(d)}/{_q(tmp)}")
            if "No space left on device" in proc.stderr:
                total, free, mount = self.remote_df()
                why = "the device ran out of disk space while keeping its engines in"
                raise DiskFullError(self._space_message(size, total, free, mount, why))
            raise DeployError(f"moving the bundle into place on {t.describe()} failed: {_tail(proc.stderr)}")
        return proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else f"{d}/{name}"

    def build_engine(self, remote_bundle: str) -> dict:
        o = self.options
        cmd = f"{self._cmd()} engine build {_q(remote_bundle)} --json" + (" --fp16" if o.fp16 else "")
        proc = self.ssh(cmd, "building the TensorRT engine", check=False)
        if proc.returncode != 0:
            hint = (
                " (the device's mind-edge has no 'engine' command: upgrade it)"
                if "No such command" in proc.stderr
                else ""
            )
            raise DeployError(
                f"building the TensorRT engine on {self.target.describe()} failed{hint}: "
                f"{_tail(proc.stderr) or _tail(proc.stdout)}"
            )
        return _last_json(proc.stdout, "engine build")

    def bench(self, remote_bundle: str, backend: str | None, precision: str | None = None) -> dict:
        o = self.options
        remote_json = f"{remote_bundle}.bench.json"
        args = [f"{self._cmd()} bench {_q(remote_bundle)} --json {_q(remote_json)}"]
        if backend:
            args.append(f"--backend {shlex.quote(backend)}")
        if precision:
            args.append(f"--precision {shlex.quote(precision)}")
        args += [shlex.quote(a) for a in o.bench_args]
        # the benchmark's own report goes to stderr; stdout carries only the JSON file
        script = f"{' '.join(args)} >&2 && cat {_q(remote_json)}"
        proc = self.ssh("sh -c " + shlex.quote(script), "running the benchmark", check=False)
        if proc.returncode != 0:
            hint = ""
            if "No such command" in proc.stderr:
                hint = " (the device's mind-edge has no 'bench' command: upgrade it)"
            elif "No such option" in proc.stderr:
                hint = " (check --bench-args against 'mind-edge bench --help' on the device)"
            raise DeployError(
                f"the benchmark on {self.target.describe()} failed (exit {proc.returncode}){hint}: "
                f"{_tail(proc.stderr, 4) or _tail(proc.stdout)}"
            )
        try:
            return json.loads(proc.stdout)
        except json.JSONDecodeError as exc:
            raise DeployError(
                f"the benchmark JSON read back from {remote_json} on {self.target.describe()} is not "
                f"valid JSON ({exc}): {proc.stdout[:200]!r}"
            ) from exc

    # -- the whole thing --------------------------------------------------------------
    def run(self, bundle: str | os.PathLike, *, out: str | os.PathLike | None = None) -> DeployResult:
        o, t = self.options, self.target
        b = Bundle.load(bundle)
        # a versioned bundle (patched on the host: CURRENT -> versions/vNNNN) sends its current version
        # as a plain bundle under the bundle's own name; the device's patch history starts from there
        name = o.name or check_remote_name((b.root or b.path).resolve().name, "the bundle's folder name (pass --name)")
        src = b.path.resolve()  # absolute: a local path never reaches rsync where it could be read as an option
        keyring = (b.root or b.path).resolve() / TRUSTED_KEYS_FILE
        extra = [keyring] if b.version is not None and keyring.is_file() else []  # a plain bundle sends its own
        size = bundle_bytes(src) + sum(p.stat().st_size for p in extra)
        seconds: dict[str, float] = {}
        t0 = time.perf_counter()
        remote = self.probe(name)
        seconds["probe"] = time.perf_counter() - t0
        if not remote.dir_ok:
            raise DeployError(f"cannot create {o.remote_dir} on {t.describe()} (permission?); choose another --dir")
        if not remote.has_rsync:
            raise DeployError(f"rsync is not installed on {t.describe()}; install it there: sudo apt-get install rsync")
        needs_cmd = o.bench or (o.engine != "never" and remote.tensorrt)
        if needs_cmd and remote.cmd is None:
            raise DeployError(
                f"'{o.remote_cmd}' is not found on {t.describe()} for a non-interactive ssh login "
                f"(PATH={remote.path}); "
                "install mind-edge on the device (see README: Jetson install) or pass --remote-cmd with its full path, "
                "e.g. --remote-cmd ~/mind-edge/.venv/bin/mind-edge"
            )
        if o.engine == "always" and not remote.tensorrt:
            raise DeployError(
                f"--engine always, but '{o.remote_python} -c \"import tensorrt\"' fails on "
                f"{t.describe()}; install TensorRT there (JetPack) or deploy with --engine auto"
            )
        if o.check_space and remote.disk_free_kb is not None and remote.disk_free_kb * 1024 < size + SPACE_MARGIN:
            raise DiskFullError(
                self._space_message(
                    size, remote.disk_total_kb, remote.disk_free_kb, remote.mount, "not enough disk space for"
                )
            )
        t1 = time.perf_counter()
        remote_bundle = self.copy(src, name, remote, size, extra=extra)
        seconds["copy"] = time.perf_counter() - t1
        result = DeployResult(
            target=t.describe(), remote_bundle=remote_bundle, copied_bytes=size, remote=remote, seconds=seconds
        )
        if o.engine != "never" and remote.tensorrt:
            t2 = time.perf_counter()
            result.engine = self.build_engine(remote_bundle)
            seconds["engine"] = time.perf_counter() - t2
            result.engine_note = f"built with TensorRT {remote.tensorrt}" + (
                " (reused: same fingerprint)" if result.engine.get("reused") else ""
            )
        elif o.engine == "never":
            result.engine_note = "skipped (--engine never)"
        else:
            result.engine_note = (
                f"no TensorRT on the device ('{o.remote_python} -c \"import tensorrt\"' failed): "
                "benchmarked with ONNX Runtime"
            )
        if o.bench:
            # with an engine: the engine next to ONNX Runtime in one run; without: the bench default (ort)
            backend = o.backend or ("trt,ort" if result.engine else None)
            engine = result.engine or {}
            precision = engine.get("fingerprint", {}).get("precision") if "trt" in (backend or "") else None
            t3 = time.perf_counter()
            result.bench = self.bench(remote_bundle, backend, precision)
            seconds["bench"] = time.perf_counter() - t3
            result.backend = backend or "ort"
            dest = Path(out) if out is not None else b.path.parent / f"{name}.bench-{_slug(t.hostname)}.json"
            atomic_write_json(dest, result.bench)
            result.bench_file = dest
        seconds["total"] = time.perf_counter() - t0
        return result


def _size(n: int) -> str:
    """Bytes for people: KiB below 1 MiB, MiB below 10 GiB, else GiB."""
    if n < 1 << 20:
        return f"{n / 1024:.0f} KiB"
    if n < 10 << 30:
        return f"{n / (1 << 20):.1f} MiB"
    return f"{n / (1 << 30):.1f} GiB"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "device"


def _last_json(stdout: str, what: str) -> dict:
    for line in reversed(stdout.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                break
    raise DeployError(f"'{what}' on the device printed no JSON summary: {_tail(stdout)!r}")


def bundle_bytes(folder: Path) -> int:
    """Bytes rsync will send: every file of the bundle except the machine-local ones."""
    total = 0
    for p in folder.rglob("*"):
        rel = p.relative_to(folder)
        if not p.is_file() or any(part.startswith(".") for part in rel.parts):
            continue
        if rel.parts[0] == "trt-cache" or any(fnmatch.fnmatch(p.name, pat) for pat in EXCLUDES if "/" not in pat):
            continue
        total += p.stat().st_size
    return total


def deploy(
    bundle: str | os.PathLike,
    target: SshTarget,
    options: DeployOptions = DeployOptions(),
    *,
    out: str | os.PathLike | None = None,
    runner: Runner | None = None,
) -> DeployResult:
    """Copy ``bundle`` to ``target``, build its engine there if TensorRT exists, benchmark it, fetch the JSON."""
    return Deployer(target, options, runner=runner).run(bundle, out=out)
