"""``mind-edge deploy`` against a REAL OpenSSH server on 127.0.0.1.

A module-scoped fixture starts ``sshd -f <config> -D -e`` on a free port with a throw-away host
key and a throw-away client key (``ssh-keygen -t ed25519 -N ''``); the "device" is this very
machine, logged into as the current user (root in CI) through the real ssh and rsync. Tests skip
with a clear reason when sshd, ssh, ssh-keygen or rsync are missing (``.ci/run`` installs
``openssh-server`` and ``rsync``).

* the remote ``mind-edge bench`` is, by default, a small fake script the test writes (it loads the
  copied bundle with ``Bundle.load`` — every sha256 checked — and writes a JSON file); when the
  real ``mind-edge bench`` exists, one test runs it remotely with tiny settings;
* full disk: a 64 KiB tmpfs mounted as the remote folder when this process may mount (root with
  CAP_SYS_ADMIN); otherwise an rsync wrapper that fails the way rsync does on ENOSPC. The test
  output names which one ran. The wrapper also runs on its own, to check rsync's ENOSPC line.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mind_edge.devices.deploy import (
    EXCLUDES,
    Deployer,
    DeployError,
    DeployOptions,
    DiskFullError,
    SshTarget,
    bench_rows,
    bundle_bytes,
    deploy,
)
from mind_edge.fileio import sha256_file
from mind_edge.runtime.bundle import assemble_bundle
from mind_edge.runtime.graph import random_arrays

SSHD = shutil.which("sshd") or ("/usr/sbin/sshd" if os.path.exists("/usr/sbin/sshd") else None)
TOOLS_MISSING = [
    t
    for t, p in (
        ("sshd", SSHD),
        ("ssh", shutil.which("ssh")),
        ("ssh-keygen", shutil.which("ssh-keygen")),
        ("rsync", shutil.which("rsync")),
    )
    if p is None
]
needs_ssh = pytest.mark.skipif(
    bool(TOOLS_MISSING),
    reason=f"needs {', '.join(TOOLS_MISSING)} (apt-get install openssh-server rsync; .ci/run installs them)",
)
MIND_EDGE = Path(sys.executable).parent / "mind-edge"
NET = {"arch": "resnet32", "in_channels": 1, "input_size": [8, 8], "width": 0.25, "capacity": 3}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "mind-edge-test", "-f", str(path)], check=True)
    return path


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    if TOOLS_MISSING:
        pytest.skip(f"needs {', '.join(TOOLS_MISSING)}")
    d = tmp_path_factory.mktemp("sshd")
    host_key = keygen(d / "host_ed25519")
    client_key = keygen(d / "client_ed25519")
    (d / "authorized_keys").write_text((d / "client_ed25519.pub").read_text())
    user = getpass.getuser()
    port = free_port()
    cfg = d / "sshd_config"
    cfg.write_text(
        "\n".join(
            [
                f"Port {port}",
                "ListenAddress 127.0.0.1",
                f"HostKey {host_key}",
                f"PidFile {d / 'sshd.pid'}",
                f"AuthorizedKeysFile {d / 'authorized_keys'}",
                "PubkeyAuthentication yes",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "UsePAM no",
                "PermitRootLogin prohibit-password",
                "StrictModes no",
                f"AllowUsers {user}",
                "AcceptEnv LANG LC_*",
                "LogLevel VERBOSE",
                "",
            ]
        )
    )
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", exist_ok=True)  # sshd's privilege separation directory
    with open(d / "sshd.log", "w") as log:
        proc = subprocess.Popen([SSHD, "-f", str(cfg), "-D", "-e"], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while True:
            if proc.poll() is not None:
                pytest.skip(f"sshd did not start (exit {proc.returncode}): {(d / 'sshd.log').read_text()[-500:]}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    proc.terminate()
                    pytest.skip("sshd did not listen within 10 s")
                time.sleep(0.05)
        (d / "ssh_config").write_text("")  # isolate from the user's ~/.ssh/config
        info = {"port": port, "key": client_key, "user": user, "dir": d, "log": d / "sshd.log"}
        yield info
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # pragma: no cover
            proc.kill()


def target(sshd, **kw) -> SshTarget:
    base = dict(
        host=f"{sshd['user']}@127.0.0.1",
        port=sshd["port"],
        identity=sshd["key"],
        connect_timeout=5,
        config_file=sshd["dir"] / "ssh_config",
        options=(
            f"UserKnownHostsFile={sshd['dir'] / 'known_hosts'}",
            "GlobalKnownHostsFile=/dev/null",
            "LogLevel=ERROR",
        ),
    )
    base.update(kw)
    return SshTarget(**base)


def deploy_cli_args(bundle, t: SshTarget, remote_dir: str, remote_cmd: str, out) -> list[str]:
    """``mind-edge deploy`` arguments reaching the test sshd as ``t`` does (its -o options included)."""
    args = ["deploy", str(bundle), "--host", t.host, "--port", str(t.port), "--identity", str(t.identity)]
    args += ["--dir", remote_dir, "--remote-cmd", remote_cmd, "--ssh-config", str(t.config_file), "--out", str(out)]
    for opt in t.options:
        args += ["-o", opt]
    return args


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    arrays = random_arrays(NET, [[0, 1], [2, 3]], seed=1)
    return assemble_bundle(
        tmp_path_factory.mktemp("local") / "digits",
        arrays,
        layout="shared",
        temperature=1.0,
        class_names=[str(i) for i in range(4)],
        mean=[0.5],
        std=[0.25],
    )


@pytest.fixture(scope="module")
def fake_bench(tmp_path_factory) -> Path:
    """A stand-in for the remote 'mind-edge': 'bench BUNDLE --json FILE ...' verifies the bundle, writes JSON."""
    path = tmp_path_factory.mktemp("fakebin") / "fake-mind-edge"
    path.write_text(f"""#!{sys.executable}
import json, sys
from mind_edge.runtime.bundle import Bundle
args = sys.argv[1:]
assert args[0] == "bench", args
b = Bundle.load(args[1])  # verifies every file's sha256 on the "device"
out = args[args.index("--json") + 1]
res = {{"bundle": str(b.path), "argv": args, "results": [
    {{"backend": "ort", "batch": 1, "latency_ms": {{"p50": 1.25, "p90": 1.5, "p99": 2.0}}, "throughput": 800.0}},
    {{"backend": "ort", "batch": 8, "latency_ms": {{"p50": 5.0, "p90": 6.0, "p99": 7.5}}, "throughput": 1600.0}}]}}
json.dump(res, open(out, "w"))
print("fake bench done")
""")
    path.chmod(0o755)
    return path


def files_of(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file()}


# ----------------------------------------------------------------------------- real sshd


@needs_ssh
def test_deploy_copies_and_benchmarks(sshd, bundle, fake_bench, tmp_path):
    remote_dir = tmp_path / "device" / "bundles"
    opts = DeployOptions(
        remote_dir=str(remote_dir), remote_cmd=str(fake_bench), bench_args=("--min-seconds", "0.05", "--batch", "1")
    )
    res = deploy(bundle, target(sshd), opts, out=tmp_path / "bench.json")
    remote = remote_dir / "digits"
    assert res.remote_bundle == str(remote)
    assert files_of(remote) == files_of(bundle)  # byte-identical copy
    assert res.copied_bytes == bundle_bytes(bundle) > 0
    assert res.remote.has_rsync and res.remote.cmd == str(fake_bench) and res.remote.tensorrt is None
    assert res.remote.disk_free_kb and res.remote.home
    assert res.engine is None and "no TensorRT on the device" in res.engine_note and res.backend == "ort"
    saved = json.loads((tmp_path / "bench.json").read_text())
    assert saved == res.bench and saved["bundle"] == str(remote)
    assert saved["argv"] == [
        "bench",
        str(remote),
        "--json",
        f"{remote}.bench.json",
        "--min-seconds",
        "0.05",
        "--batch",
        "1",
    ]
    assert sorted(p.name for p in remote_dir.iterdir()) == ["digits", "digits.bench.json"]  # no temp folders left
    assert set(res.seconds) == {"probe", "copy", "bench", "total"}


@needs_ssh
def test_redeploy_is_atomic_keeps_device_engines_and_never_sends_local_ones(sshd, bundle, fake_bench, tmp_path):
    local = tmp_path / "local" / "digits"
    shutil.copytree(bundle, local)
    (local / "engine-00000000000000aa.plan").write_bytes(b"engine of THIS machine")
    (local / "engine.json").write_text("{}")
    (local / "trt-cache").mkdir()
    (local / "trt-cache" / "timing.cache").write_bytes(b"t")
    remote_dir = tmp_path / "device"
    opts = DeployOptions(remote_dir=str(remote_dir), remote_cmd=str(fake_bench), bench=False)
    deploy(local, target(sshd), opts)
    remote = remote_dir / "digits"
    assert not (remote / "engine.json").exists() and not (remote / "trt-cache").exists()
    assert not list(remote.glob("engine-*.plan"))
    # the device builds its own engine; a redeploy keeps it (its fingerprint decides whether it still fits)
    (remote / "engine-00000000000000bb.plan").write_bytes(b"engine of the device")
    (remote / "engine.json").write_text('{"device": true}')
    (remote / "trt-cache").mkdir()
    (remote / "trt-cache" / "timing.cache").write_bytes(b"device cache")
    inode = (remote / "model.onnx").stat().st_ino
    res = deploy(local, target(sshd), opts)
    assert res.remote.exists
    assert (remote / "engine-00000000000000bb.plan").read_bytes() == b"engine of the device"
    assert json.loads((remote / "engine.json").read_text()) == {"device": True}
    assert (remote / "trt-cache" / "timing.cache").read_bytes() == b"device cache"
    assert not (remote / "engine-00000000000000aa.plan").exists()
    assert (remote / "model.onnx").stat().st_ino == inode  # unchanged files are hard-linked (--link-dest), not resent
    assert sorted(p.name for p in remote_dir.iterdir()) == ["digits"]


@needs_ssh
def test_cli_deploy_table_and_json(sshd, bundle, fake_bench, tmp_path):
    from mind_edge.cli import app

    t = target(sshd)
    base = deploy_cli_args(bundle, t, str(tmp_path / "dev"), str(fake_bench), tmp_path / "b.json")
    r = CliRunner().invoke(app, base + ["--bench-args", "--min-iters 2"], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    assert "benchmark on" in r.stdout and "latency_ms.p50" in r.stdout and "1600" in r.stdout
    assert "no TensorRT on the device" in r.stdout
    r = CliRunner().invoke(app, base + ["--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["remote_bundle"] == str(tmp_path / "dev" / "digits") and out["bench"]["results"][1]["batch"] == 8
    r = CliRunner().invoke(
        app,
        [
            "deploy",
            str(bundle),
            "--host",
            t.host,
            "--port",
            str(free_port()),
            "--ssh-config",
            str(t.config_file),
            "--identity",
            str(t.identity),
        ],
    )
    assert r.exit_code == 2 and "connection refused" in r.stderr


@needs_ssh
def test_wrong_key_is_a_clear_error(sshd, bundle, tmp_path):
    other = keygen(tmp_path / "not_authorized")
    with pytest.raises(DeployError) as err:
        deploy(bundle, target(sshd, identity=other), DeployOptions(remote_dir=str(tmp_path / "d")))
    msg = str(err.value)
    assert "refused our key (Permission denied)" in msg and str(other) in msg and "authorized_keys" in msg
    assert "ssh-copy-id" in msg


@needs_ssh
def test_connection_refused_is_a_clear_error(sshd, bundle, tmp_path):
    port = free_port()  # nothing listens there
    with pytest.raises(DeployError) as err:
        deploy(bundle, target(sshd, port=port), DeployOptions(remote_dir=str(tmp_path / "d")))
    assert f"connecting to {sshd['user']}@127.0.0.1 port {port} failed: connection refused" in str(err.value)
    assert f"listening on port {port}" in str(err.value)


@needs_ssh
def test_remote_mind_edge_missing(sshd, bundle, tmp_path):
    with pytest.raises(DeployError) as err:
        deploy(bundle, target(sshd), DeployOptions(remote_dir=str(tmp_path / "d"), remote_cmd="mind-edge-not-here"))
    msg = str(err.value)
    assert "'mind-edge-not-here' is not found on" in msg and "PATH=" in msg and "--remote-cmd" in msg
    assert not (tmp_path / "d" / "digits").exists()  # refused before copying
    with pytest.raises(DeployError, match="'/nowhere/mind-edge' is not found"):
        deploy(bundle, target(sshd), DeployOptions(remote_dir=str(tmp_path / "d"), remote_cmd="/nowhere/mind-edge"))
    # nothing to run there: copying alone needs no mind-edge on the device
    res = deploy(
        bundle,
        target(sshd),
        DeployOptions(remote_dir=str(tmp_path / "d"), remote_cmd="mind-edge-not-here", bench=False),
    )
    assert res.bench is None and (tmp_path / "d" / "digits" / "bundle.json").is_file()


@pytest.fixture
def small_disk(tmp_path):
    """A 64 KiB tmpfs (if this process may mount), else None."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True, text=True)
    if proc.returncode != 0:
        yield None
        return
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


@needs_ssh
def test_full_remote_disk(sshd, bundle, fake_bench, small_disk, tmp_path, capsys):
    size = bundle_bytes(bundle)
    assert size > 64 * 1024, "the test bundle must not fit into 64 KiB"
    if small_disk is not None:
        with capsys.disabled():
            print(f"\n[full disk: simulated with a 64 KiB tmpfs at {small_disk}]")
        remote_dir = small_disk / "bundles"
        # 1. the probe's df shows it cannot fit: refused before copying
        with pytest.raises(DiskFullError) as err:
            deploy(bundle, target(sshd), DeployOptions(remote_dir=str(remote_dir), remote_cmd=str(fake_bench)))
        msg = str(err.value)
        assert "not enough disk space for" in msg and f"needs {size / 1024:.0f} KiB" in msg
        assert f"KiB free of 64 KiB on {small_disk}" in msg
        # 2. copy anyway: rsync's ENOSPC is recognised, the partial copy removed, df reported
        with pytest.raises(DiskFullError) as err:
            deploy(
                bundle,
                target(sshd),
                DeployOptions(remote_dir=str(remote_dir), remote_cmd=str(fake_bench), check_space=False),
            )
        msg = str(err.value)
        # rsync's "No space left on device" when it gets through; when the receiver dies first the message is
        # lost (exit 11, empty stderr) and df decides
        assert "ran out of disk space while copying" in msg
        assert "No space left on device" in msg or "rsync exit 11" in msg, msg
        assert f"KiB free of 64 KiB on {small_disk}" in msg
        assert list(remote_dir.iterdir()) == []  # no partial copy left behind
    else:
        with capsys.disabled():
            print("\n[full disk: mount not permitted here; simulated with an rsync wrapper failing with ENOSPC]")
        check_enospc_wrapper(sshd, bundle, fake_bench, tmp_path)


def check_enospc_wrapper(sshd, bundle, fake_bench, tmp_path):
    wrapper = tmp_path / "rsync-enospc"
    wrapper.write_text(
        '#!/bin/sh\necho \'rsync: [receiver] write failed on "/x/model.onnx": No space left on '
        'device (28)\' >&2\necho "rsync error: error in file IO (code 11)" >&2\nexit 11\n'
    )
    wrapper.chmod(0o755)
    with pytest.raises(DiskFullError) as err:
        deploy(
            bundle,
            target(sshd, rsync=str(wrapper)),
            DeployOptions(remote_dir=str(tmp_path / "d"), remote_cmd=str(fake_bench)),
        )
    msg = str(err.value)
    assert (
        'ran out of disk space while copying (rsync: [receiver] write failed on "/x/model.onnx": No space left on '
        "device (28))"
        in msg
        and "free of" in msg
    ), msg


@needs_ssh
def test_rsync_enospc_message_is_recognised(sshd, bundle, fake_bench, tmp_path):
    """rsync's own ENOSPC line, through a wrapper (the real disk here has room): recognised and reported with df."""
    check_enospc_wrapper(sshd, bundle, fake_bench, tmp_path)


def real_bench_command(folder: Path) -> str | None:
    """The real 'mind-edge bench': the installed command, else a launcher of the CLI's app (mind_edge.cli)
    in this interpreter; None without it."""
    proc = (
        subprocess.run([str(MIND_EDGE), "bench", "--help"], capture_output=True, text=True)
        if MIND_EDGE.exists()
        else None
    )
    if proc is not None and proc.returncode == 0 and "--json" in proc.stdout:
        return str(MIND_EDGE)
    import importlib.util

    if importlib.util.find_spec("mind_edge.cli") is None:
        return None
    launcher = folder / "mind-edge-with-bench"
    launcher.write_text(f"""#!{sys.executable}
from mind_edge.cli import main
main()
""")
    launcher.chmod(0o755)
    return str(launcher)


def real_bench_options(tmp_path: Path) -> DeployOptions:
    """Deploy options that run the real 'mind-edge bench' remotely with tiny settings (skip without it)."""
    cmd = real_bench_command(tmp_path)
    if cmd is None:
        pytest.skip("no 'mind-edge bench' in this mind-edge")
    return DeployOptions(
        remote_dir=str(tmp_path / "dev"),
        remote_cmd=cmd,
        bench_args=(
            "--min-seconds",
            "0.05",
            "--min-iters",
            "2",
            "--batch",
            "1",
            "--warmup-seconds",
            "0.01",
            "--no-gemm",
            "--no-isolate",
        ),
    )


@needs_ssh
def test_real_remote_bench(sshd, bundle, tmp_path):
    opts = real_bench_options(tmp_path)
    res = deploy(bundle, target(sshd), opts, out=tmp_path / "bench.json")
    assert res.backend == "ort" and res.bench["results"], res.bench
    row = res.bench["results"][0]
    assert row["backend"] == "ort" and row["batch"] == 1 and row["status"] == "ok" and row["p50_ms"] > 0
    cols, rows = bench_rows(res.bench)
    assert cols[:4] == ["backend", "variant", "tasks", "status"] and "p50_ms" in cols and rows[0][0] == "ort"
    assert json.loads((tmp_path / "bench.json").read_text()) == res.bench


@needs_ssh
def test_cli_deploy_renders_a_real_bench_report_like_bench(sshd, bundle, tmp_path):
    """A report of this version's 'mind-edge bench' fetched from the device is shown by the one bench
    renderer (the table of 'mind-edge bench'), not as flattened JSON fields."""
    from mind_edge.cli import app

    opts = real_bench_options(tmp_path)
    t = target(sshd)
    args = deploy_cli_args(bundle, t, opts.remote_dir, opts.remote_cmd, tmp_path / "b.json")
    args += ["--bench-args", " ".join(opts.bench_args)]
    r = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    assert f"benchmark on {t.host}" in r.stdout and "latency per batch" in r.stdout and "p50 ms" in r.stdout
    assert "latency_ms.p50" not in r.stdout and "p50_ms" not in r.stdout


@needs_ssh
def test_versioned_bundle_deploys_and_runs_its_current_version(sshd, tmp_path):
    """A bundle patched on the host (CURRENT -> versions/v0002) deploys its current version as a
    plain bundle under the bundle's own name; the remote bench runs that version (4 tasks, not the
    base's 3) and a patch applied on the device starts its own history from it."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runtime"))
    try:
        from patch_helpers import world
    finally:
        sys.path.pop(0)
    from mind_edge.runtime.bundle import Bundle
    from mind_edge.runtime.patch import apply_patch

    w = world(tmp_path / "w")
    local = tmp_path / "local" / "patched"
    shutil.copytree(w.base, local)
    apply_patch(local, w.p3)
    assert (local / "CURRENT").exists() and Bundle.load(local).num_tasks == 4
    opts = real_bench_options(tmp_path)
    res = deploy(local, target(sshd), opts, out=tmp_path / "bench.json")
    remote = Path(res.remote_bundle)
    current = Bundle.load(local).path
    assert remote.name == "patched" and current.parent.name == "versions"
    visible = lambda d: {k: v for k, v in files_of(d).items() if not any(p.startswith(".") for p in Path(k).parts)}
    assert visible(remote) == visible(current)  # the current version, byte for byte, as a plain bundle
    assert Bundle.load(remote).num_tasks == 4 and not (remote / "CURRENT").exists()
    rows = [r for r in res.bench["results"] if r["status"] == "ok"]
    assert rows and all(r["tasks"] == 4 for r in rows), res.bench["results"]
    apply_patch(remote, w.p4)  # the device patches on from what it received
    assert Bundle.load(remote).num_tasks == 5 and (remote / "CURRENT").exists()


# ----------------------------------------------------------------------------- no sshd needed


def test_ssh_arguments():
    t = SshTarget("jetson@orin.local", port=2222, identity=Path("/k/id"), options=("ProxyJump=gw",))
    assert t.ssh_args() == [
        "ssh",
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=accept-new",
        "-o",
        "ConnectTimeout=10",
        "-p",
        "2222",
        "-i",
        "/k/id",
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "ProxyJump=gw",
    ]
    assert t.ssh_command("uname -m")[-2:] == ["jetson@orin.local", "uname -m"]
    assert t.rsync_shell().startswith("ssh -o BatchMode=yes")
    assert SshTarget("orin", strict_host_key_checking="yes").ssh_args()[4] == "StrictHostKeyChecking=yes"
    assert "-F" in SshTarget("orin", config_file=Path("/c")).ssh_args()
    assert (t.user, t.hostname, t.describe()) == ("jetson", "orin.local", "jetson@orin.local port 2222")
    for bad in (
        dict(host="-oProxyCommand=x"),
        dict(host="a b"),
        dict(host="h", port=0),
        dict(host="h", port=70000),
        dict(host="h", strict_host_key_checking="maybe"),
        dict(host="h", options=("ProxyJump",)),
        dict(host="h", connect_timeout=0),
    ):
        with pytest.raises(DeployError):
            SshTarget(**bad)
    with pytest.raises(DeployError, match="engine must be"):
        DeployOptions(engine="sometimes")
    with pytest.raises(DeployError, match="--name"):
        DeployOptions(name="../x")
    with pytest.raises(DeployError, match="--remote-cmd"):
        DeployOptions(remote_cmd="'unbalanced")


class Proc:
    def __init__(self, rc, out="", err=""):
        self.returncode, self.stdout, self.stderr = rc, out, err


@pytest.mark.parametrize(
    "stderr,expected",
    [
        ("ssh: Could not resolve hostname orin.local: Name or service not known", "does not resolve"),
        ("ssh: connect to host 10.0.0.9 port 22: Connection timed out", "no answer within 10 s"),
        ("Host key verification failed.", "ssh-keygen -R orin.local"),
        ("@ WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! @", "has CHANGED"),
        ("ssh: connect to host 10.0.0.9 port 22: No route to host", "no route to host"),
    ],
)
def test_ssh_failures_are_named(stderr, expected, bundle):
    d = Deployer(SshTarget("jetson@orin.local"), runner=lambda args, **kw: Proc(255, err=stderr), check_tools=False)
    with pytest.raises(DeployError) as err:
        d.run(bundle)
    assert expected in str(err.value) and "connecting to jetson@orin.local failed" in str(err.value)


def test_missing_local_tools(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None if name == "rsync" else "/usr/bin/" + name)
    with pytest.raises(DeployError, match="'rsync' is not installed on this machine.*apt-get install rsync"):
        Deployer(SshTarget("orin"))


def test_bundle_bytes_skips_machine_local_files(tmp_path, bundle):
    b = tmp_path / "b"
    shutil.copytree(bundle, b)
    base = bundle_bytes(b)
    assert base == sum(p.stat().st_size for p in bundle.iterdir() if p.is_file())
    (b / "engine-0011.plan").write_bytes(b"x" * 100)
    (b / "engine.json").write_text("{}")
    (b / ".tmp").write_text("x")
    (b / "trt-cache").mkdir()
    (b / "trt-cache" / "a").write_bytes(b"x" * 10)
    assert bundle_bytes(b) == base
    assert "engine-*.plan" in EXCLUDES and "trt-cache/" in EXCLUDES


def test_bench_rows_for_any_json():
    cols, rows = bench_rows(
        {
            "results": [
                {"backend": "ort", "batch": 1, "latency_ms": {"p50": 1.2345678}, "junk": 1},
                {"backend": "trt", "batch": 8, "latency_ms": {"p50": 0.5}},
            ]
        }
    )
    assert cols == ["backend", "batch", "latency_ms.p50"]
    assert rows == [["ort", "1", "1.235"], ["trt", "8", "0.5"]]
    cols, rows = bench_rows({"p50_ms": 1.0, "context": {"cpu": "x86", "threads": 2}})
    assert cols == ["field", "value"] and ["context.cpu", "x86"] in rows
    cols, rows = bench_rows([{"name": "a", "p99": None}])
    assert rows == [["a", "-"]]
