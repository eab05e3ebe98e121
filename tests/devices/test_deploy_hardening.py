"""Issue 11 against deploy, written as attacks: paths that read as options, modes on the device, pinned keys.

The option-injection tests run the real ``rsync`` (no sshd needed: the "ssh" it starts is a stub that
fails); the end-to-end test uses the real OpenSSH server fixture of ``test_deploy.py``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_deploy import NET, files_of, needs_ssh, sshd, target  # noqa: F401  (sshd is a fixture)

from mind_edge.devices.deploy import Deployer, DeployError, DeployOptions, SshTarget
from mind_edge.runtime.bundle import assemble_bundle
from mind_edge.runtime.graph import random_arrays

PROBE = (
    "mind-edge-probe=1\nhome=/h\npath=/bin\nmachine=x86_64\nrsync=1\ncmd=\ntensorrt=\ndir=1\nexists=0\n"
    "df=1000000 900000 /\n"
)


def _bundle(folder: Path) -> Path:
    arrays = random_arrays(NET, [[0, 1], [2, 3]], seed=1)
    return assemble_bundle(
        folder, arrays, layout="shared", temperature=1.0, class_names=[str(i) for i in range(4)], mean=[0.5], std=[0.25]
    )


@pytest.mark.skipif(shutil.which("rsync") is None, reason="needs rsync (apt-get install rsync)")
@pytest.mark.parametrize("evil", ["-esh -c mkdir${IFS}PWNED", "-rf", "--remove-source-files"])
def test_a_bundle_folder_named_like_an_option_is_never_an_option(tmp_path, evil, monkeypatch):
    """The folder is passed as ./NAME (pathlib turns that into NAME): rsync must see an absolute path after
    '--' — no local command runs, no option is set, the bundle is not touched."""
    work = tmp_path / "work"
    work.mkdir()
    _bundle(work / evil)
    before = files_of(work / evil)
    stub = tmp_path / "ssh-stub"
    stub.write_text('#!/bin/sh\necho "$@" >> "$(dirname "$0")/ssh-calls"\nexit 255\n')
    stub.chmod(0o755)
    calls = []

    def runner(args, **kw):
        calls.append(list(args))
        if args[0] == str(stub):
            return subprocess.CompletedProcess(args, 0, PROBE, "")  # ssh calls of deploy itself, answered here
        return subprocess.run(list(args), capture_output=True, text=True, cwd=work, stdin=subprocess.DEVNULL)

    monkeypatch.chdir(work)
    d = Deployer(
        SshTarget("dev@device", ssh=str(stub)),
        DeployOptions(remote_dir="/srv/b", name="b", bench=False, engine="never"),
        runner=runner,
        check_tools=False,
    )
    with pytest.raises(DeployError):
        d.run(Path(f"./{evil}"))
    rsync = next(c for c in calls if c[0] == "rsync")
    dash = rsync.index("--")
    assert all(a.startswith("/") for a in rsync[dash + 1 : -1]), rsync
    assert not any(evil in a for a in rsync[:dash]), rsync
    assert not (work / "PWNED").exists() and not (work / "PWNED/").exists()
    assert files_of(work / evil) == before  # --remove-source-files did not become an option
    ssh = next(c for c in calls if c[0] == str(stub))
    assert ssh[ssh.index("--") + 1] == "dev@device"


def test_remote_names_that_read_as_options_are_refused(tmp_path):
    for bad in ("-rf", "--dir=x"):
        with pytest.raises(DeployError, match="must not start with '-'"):
            DeployOptions(remote_dir=bad)
        with pytest.raises(DeployError, match="plain folder name"):
            DeployOptions(name=bad)
    b = _bundle(tmp_path / "-x")
    d = Deployer(SshTarget("dev@device"), DeployOptions(), runner=lambda *a, **k: None, check_tools=False)
    with pytest.raises(DeployError, match="pass --name"):
        d.run(b)


@needs_ssh
def test_deploy_gives_device_umask_modes_and_carries_pinned_keys(sshd, tmp_path):  # noqa: F811 - a fixture
    """A bundle written under umask 077 (0600 files) arrives readable by a runtime service of another user when
    the device's umask allows it; a versioned bundle's TRUSTED_KEYS go with it and still require signatures."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runtime"))
    try:
        from patch_helpers import world
    finally:
        sys.path.pop(0)
    from mind_edge.devices.deploy import deploy
    from mind_edge.runtime.patch import PatchError, apply_patch
    from mind_edge.runtime.signing import trust_key

    w = world(tmp_path / "w")
    local = tmp_path / "local" / "pinned"
    old = os.umask(0o077)
    try:
        shutil.copytree(w.base, local)
        for p in [local, *local.rglob("*")]:
            p.chmod(0o700 if p.is_dir() else 0o600)
        trust_key(local, w.pub)
        apply_patch(local, w.p3_signed)
    finally:
        os.umask(old)
    assert (local / "TRUSTED_KEYS").stat().st_mode & 0o077 == 0
    res = deploy(local, target(sshd), DeployOptions(remote_dir=str(tmp_path / "device"), bench=False, engine="never"))
    remote = Path(res.remote_bundle)
    assert (remote / "TRUSTED_KEYS").read_text() == (local / "TRUSTED_KEYS").read_text()
    for p in remote.rglob("*"):  # the sshd session runs with the usual umask 022
        assert p.stat().st_mode & 0o044 == 0o044, (p, oct(p.stat().st_mode))
    with pytest.raises(PatchError, match="not signed but a signature is required"):
        apply_patch(remote, w.p4)  # the device keeps requiring a signature by the pinned key
