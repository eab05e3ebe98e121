"""Issue 11, written as attacks: what a crafted bundle, patch, name or a full/read-only disk can do.

Each test is one class of problem; every refusal is ONE ``error:`` line with exit code 2 (3 for
"nothing to do") and leaves the bundle tree byte-identical; where an operation succeeds, nothing
outside the bundle is touched. Torch-free.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import one_error_line
from hardening_helpers import (
    ESC,
    frame_patch,
    one_line,
    remount_ro,
    run_cli,
    small_fs,
    split_patch,
    vm_hwm_mb,
    zip_bomb_payload,
)
from patch_helpers import NAMES, make_bundle, tree_hash, world
from typer.testing import CliRunner

from mind_edge.runtime.bundle import Bundle
from mind_edge.runtime.errors import BundleError
from mind_edge.runtime.patch import AlreadyAppliedError, PatchError, apply_patch, read_patch, rollback
from mind_edge.runtime.signing import SignatureError, trust_key

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


@pytest.fixture(scope="module")
def w(tmp_path_factory):
    return world(tmp_path_factory.mktemp("hardening"))


@pytest.fixture(scope="module")
def app():
    from mind_edge.cli import app as main_app

    return main_app


@pytest.fixture
def deployed(w, tmp_path):
    dst = tmp_path / "site" / "bundle"
    shutil.copytree(w.base, dst)
    return dst


def cli(app, *args):
    return CliRunner().invoke(app, [str(a) for a in args])


def patch_bytes(w, header_edit=None, payload=None, sign=False) -> bytes:
    header, body = split_patch(w.p3.read_bytes())
    if header_edit is not None:
        header_edit(header)
    return frame_patch(header, body if payload is None else payload, sign_key=w.key if sign else None)


# ----------------------------------------------------------------------------- 1. names that leave the bundle


@pytest.mark.parametrize(
    "name",
    [
        "../outside.txt",
        "../../far.txt",
        "/ABS",
        "sub/x",
        ".hidden",
        "-rf",
        "a\nb",
        "..",
        "CURRENT",
        "versions",
        "TRUSTED_KEYS",
        "",
    ],
)
def test_bundle_json_names_that_leave_the_bundle_are_refused_and_apply_deletes_nothing(w, deployed, app, name):
    site = deployed.parent
    outside = site / "outside.txt"
    outside.write_text("a user's file next to the bundle")
    target = {"/ABS": str(site / "outside.txt")}.get(name, name)
    meta = json.loads((deployed / "bundle.json").read_text())
    import hashlib

    meta["files"][target] = {
        "sha256": hashlib.sha256(outside.read_bytes()).hexdigest(),
        "bytes": outside.stat().st_size,
    }
    (deployed / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError):
        Bundle.load(deployed)
    before = tree_hash(site)
    line = one_error_line(cli(app, "patch", "apply", deployed, w.p3_signed, "--verify-key", w.pub))
    assert "plain file name" in line or "reserves" in line, line
    assert tree_hash(site) == before and outside.read_text() == "a user's file next to the bundle"


def test_other_names_read_from_files_are_plain_names_too(bundle_copy):
    meta = json.loads((bundle_copy / "bundle.json").read_text())
    meta["probe"]["file"] = "../../etc/passwd"
    (bundle_copy / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="not a plain file name"):
        Bundle.load(bundle_copy)


def test_a_bundle_file_that_is_a_symlink_is_refused(bundle_copy, tmp_path):
    real = tmp_path / "elsewhere.npz"
    shutil.move(bundle_copy / "probe.npz", real)
    (bundle_copy / "probe.npz").symlink_to(real)
    with pytest.raises(BundleError, match="missing probe.npz"):
        Bundle.load(bundle_copy)


# ----------------------------------------------------------------------------- 3. work before trust (zip bomb)


@pytest.fixture(scope="module")
def bomb(w, tmp_path_factory) -> Path:
    """A 2 MB unsigned patch whose values.npy inflates to 2 GiB (the header is that of a real patch)."""
    p = tmp_path_factory.mktemp("bomb") / "bomb.mepatch"
    p.write_bytes(patch_bytes(w, payload=zip_bomb_payload(split_patch(w.p3.read_bytes())[1], 2 << 30)))
    assert 1.5e6 < p.stat().st_size < 3e6
    return p


def test_zip_bomb_with_verify_key_is_refused_before_decoding(w, deployed, bomb, tmp_path, capsys):
    """The acceptance figure: under 150 MB peak RSS and within 2 s, measured in a fresh process (VmHWM)."""
    hwm = tmp_path / "status"
    before = tree_hash(deployed.parent)
    proc, seconds = run_cli("patch", "apply", deployed, bomb, "--verify-key", w.pub, hwm_file=hwm)
    line = one_line(proc)
    assert "not signed but a signature is required" in line
    peak = vm_hwm_mb(hwm)
    with capsys.disabled():
        print(
            f"\n[zip bomb ({bomb.stat().st_size / 1e6:.2f} MB -> 2 GiB), patch apply --verify-key: refused in "
            f"{seconds:.2f} s (process wall time, interpreter start included), peak RSS {peak:.0f} MB]"
        )
    assert peak < 150 and seconds < 2.0, (peak, seconds)
    assert tree_hash(deployed.parent) == before


def test_zip_bomb_without_a_key_is_refused_from_the_zip_directory(w, deployed, bomb, tmp_path):
    """No key trusted: the payload is decoded, but each member's inflated size is read from the zip directory
    and compared with what the header's layer records imply before anything is inflated; inspect never decodes."""
    hwm = tmp_path / "status"
    before = tree_hash(deployed.parent)
    proc, _ = run_cli("patch", "apply", deployed, bomb, hwm_file=hwm)
    assert "inflates to 2,147,483,648 bytes" in one_line(proc)
    assert vm_hwm_mb(hwm) < 400  # the bundle's own model and ONNX are loaded first; never the 2 GiB
    proc, seconds = run_cli("patch", "inspect", bomb, hwm_file=hwm)
    assert proc.returncode == 0 and vm_hwm_mb(hwm) < 150 and seconds < 5, proc.stderr
    assert tree_hash(deployed.parent) == before


def test_declared_sizes_are_bounded_and_unknown_members_refused(w):
    def huge_layer(h):
        h["layers"][0]["shape"] = [1 << 20, 1 << 10]
        h["layers"][0]["free"] = h["layers"][0]["claimed"] = 1 << 30
        h["layers"][0]["encoding"], h["layers"][0]["position_bytes"] = "delta8", 1 << 30

    with pytest.raises(PatchError, match="refused before decoding|weights"):
        from mind_edge.runtime.patch import parse_patch

        parse_patch(patch_bytes(w, huge_layer))
    import io
    import zipfile

    header, body = split_patch(w.p3.read_bytes())
    buf = io.BytesIO(body)
    with zipfile.ZipFile(buf, "a") as zf:
        zf.writestr("extra.npy", b"x")
    with pytest.raises(PatchError, match="unknown ones"):
        parse_patch(frame_patch(header, buf.getvalue()))


def test_files_larger_than_the_cap_are_not_read(w, tmp_path, monkeypatch):
    import mind_edge.runtime.patch_format as pf

    monkeypatch.setattr(pf, "MAX_PATCH_BYTES", 1000)
    with pytest.raises(PatchError, match="more than the 1,000 this mind-edge reads"):
        read_patch(w.p3)


# ----------------------------------------------------------------------------- 4. trust that cannot be forgotten


def test_a_bundle_pins_its_trusted_keys(w, deployed, app, tmp_path):
    r = cli(app, "patch", "trust", deployed, w.pub)
    assert r.exit_code == 0 and "now trusted" in r.stdout, r.output
    assert (deployed / "TRUSTED_KEYS").is_file()
    before = tree_hash(deployed.parent)
    # unsigned, without any flag: refused (the bundle remembers)
    assert "not signed but a signature is required" in one_error_line(cli(app, "patch", "apply", deployed, w.p3))
    # signed by another key: refused
    other = tmp_path / "other.mepatch"
    from mind_edge.runtime.signing import generate_keypair

    kp = generate_keypair(tmp_path / "k2")
    header, body = split_patch(w.p3.read_bytes())
    header["signature"] = {"algorithm": "ed25519", "key_id": kp.key_id}
    other.write_bytes(frame_patch(header, body, sign_key=kp.secret_path))
    assert "not with the key" in one_error_line(cli(app, "patch", "apply", deployed, other))
    # --verify-key cannot swap in an untrusted key
    assert "is not one of the trusted keys" in one_error_line(
        cli(app, "patch", "apply", deployed, other, "--verify-key", kp.public_path)
    )
    assert tree_hash(deployed.parent) == before
    # signed by the trusted key: applies without any flag; the pin survives the switch to versions/
    r = cli(app, "patch", "apply", deployed, w.p3_signed, "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["signed_by"], r.output
    assert (deployed / "TRUSTED_KEYS").is_file()
    assert "not signed" in one_error_line(cli(app, "patch", "apply", deployed, w.p4))
    r = cli(app, "patch", "trust", deployed, "--json")
    assert json.loads(r.stdout)["trusted_keys"] == [read_patch(w.p3_signed, decode=False).key_id]


# ----------------------------------------------------------------------------- 5. cleanup deletes only its own


def test_cleanup_removes_only_what_mind_edge_created(w, deployed):
    apply_patch(deployed, w.p3)
    own = deployed / "versions" / "my-notes"
    own.mkdir()
    (own / "keep.txt").write_text("mine")
    (deployed / "versions" / "README.txt").write_text("mine too")
    (deployed / "notes.txt").write_text("a user file the README promises to leave alone")
    stray = json.loads((deployed / "versions" / "v0002" / "bundle.json").read_text())
    stray["files"]["notes.txt"] = {"sha256": "0" * 64, "bytes": 1}
    (deployed / "bundle.json").write_text(json.dumps(stray))  # a stray top-level bundle.json listing notes.txt
    (deployed / "versions" / ".v0009.abc123.tmp").mkdir()  # a leftover of an interrupted write: ours
    apply_patch(deployed, w.p4)
    rollback(deployed)
    assert (own / "keep.txt").read_text() == "mine" and (deployed / "versions" / "README.txt").is_file()
    assert (deployed / "notes.txt").is_file() and (deployed / "bundle.json").is_file()
    assert not (deployed / "versions" / ".v0009.abc123.tmp").exists()


def test_a_symlinked_versions_folder_is_refused_and_never_followed(w, deployed, tmp_path, app):
    apply_patch(deployed, w.p3)
    outside = tmp_path / "outside"
    shutil.move(deployed / "versions", outside)
    (outside / "user-file.txt").write_text("not the bundle's")
    (outside / "v0001").rename(outside / "v0007")  # would be "not kept" if the link were followed
    (deployed / "versions").symlink_to(outside)
    before = tree_hash(outside)
    for args in (("patch", "apply", deployed, w.p4), ("patch", "rollback", deployed), ("predict", deployed, "x.png")):
        assert "symbolic link" in one_error_line(cli(app, *args))
    assert tree_hash(outside) == before


# ----------------------------------------------------------------------------- 6. terminal injection

EVIL = [
    "[/bold]",
    "[link=https://evil.example]click[/link]",
    f"{ESC}]8;;https://evil.example{ESC}\\hi{ESC}]8;;{ESC}\\",
    "two\nerror: forged line",
    f"{ESC}[2J{ESC}[31mred",
    "\u202egnp.exe",
    "[bold red]x",
]


@pytest.fixture(scope="module")
def evil(w, tmp_path_factory):
    """A signed patch whose class names are markup, escape sequences and newlines, and a bundle named so too."""
    from mind_edge.runtime.patch import build_patch

    d = tmp_path_factory.mktemp("evil")
    names3 = [EVIL[0], EVIL[1], EVIL[2]]
    a3, a4 = w.full.first_tasks(3), w.full.first_tasks(4)
    p = d / "evil.mepatch"
    p.write_bytes(build_patch(a3, a4, 3, names3, sign_key=w.key))
    names = list(NAMES)
    for c, n in zip([4, 1, 0, 9, 3, 5], EVIL[1:]):
        names[c] = n
    from mind_edge.runtime.bundle import assemble_bundle

    b = assemble_bundle(d / "b[red]x", a3, layout="shared", temperature=1.5, class_names=names, mean=[0.5], std=[0.25])
    return p, b


def _clean_output(result) -> str:
    out = result.stdout + result.stderr
    assert ESC not in out and "\x07" not in out, repr(out)
    assert "MarkupError" not in out and "Traceback" not in out
    return out


def test_class_names_are_data_never_markup(w, deployed, app, evil, tmp_path):
    patch, evil_bundle = evil
    r = cli(app, "patch", "apply", deployed, patch, "--verify-key", w.pub)
    assert r.exit_code == 0, r.output
    out = "".join(_clean_output(r).split())
    assert "[/bold]" in out and "[link=https://evil.example]click[/link]" in out  # shown literally
    r = cli(app, "patch", "inspect", patch)
    assert r.exit_code == 0 and "[/bold]" in _clean_output(r)
    r = cli(app, "patch", "inspect", deployed)
    assert r.exit_code == 0 and "[/bold]" in _clean_output(r)
    img = tmp_path / "x.png"
    from PIL import Image

    Image.fromarray(np.zeros((8, 8), np.uint8)).save(img)
    r = cli(app, "predict", evil_bundle, img)
    assert r.exit_code == 0, r.output
    out = _clean_output(r)
    assert "b[red]x" in out


def test_newlines_and_escapes_cannot_forge_error_lines(app, tmp_path):
    name = tmp_path / f"no\nerror: forged{ESC}[2J[bold]"
    line = one_error_line(cli(app, "predict", name, "x.png"))
    assert "\\n" in line and "\\x1b" in line and "[bold]" in line and ESC not in line


# ----------------------------------------------------------------------------- 7. secrets in errors


def test_a_pointer_to_a_secret_never_echoes_it(w, deployed, app):
    apply_patch(deployed, w.p3)
    (deployed / "CURRENT").unlink()
    (deployed / "CURRENT").symlink_to(w.key)
    seed = w.key.read_text().split()[1]
    for args in (("predict", deployed, "x.png"), ("patch", "apply", deployed, w.p4), ("patch", "inspect", deployed)):
        line = one_error_line(cli(app, *args))
        assert "symbolic link" in line and not any(seed[i : i + 8] in line for i in range(0, 57))
    (deployed / "CURRENT").unlink()
    (deployed / "CURRENT").write_text(w.key.read_text())  # a regular file holding the secret
    line = one_error_line(cli(app, "predict", deployed, "x.png"))
    assert "CURRENT" in line and not any(seed[i : i + 8] in line for i in range(0, 57))


def test_a_secret_key_readable_by_others_is_refused(w, tmp_path):
    from mind_edge.runtime.signing import generate_keypair, sign_digest

    kp = generate_keypair(tmp_path / "k")
    os.chmod(kp.secret_path, 0o644)
    with pytest.raises(SignatureError, match="too open.*chmod 600"):
        sign_digest(kp.secret_path, b"\0" * 32)
    os.chmod(kp.secret_path, 0o600)
    assert sign_digest(kp.secret_path, b"\0" * 32)[0]


# ----------------------------------------------------------------------------- 8/9. no traceback; refused = untouched

BAD_HEADERS = {
    "classes as strings": lambda h: h.update(classes=[str(c) for c in h["classes"]]),
    "base {}": lambda h: h.update(base={}),
    "layers null": lambda h: h.update(layers=None),
    "task 4.7": lambda h: h.update(task=4.7),
    "task true": lambda h: h.update(task=True),
    "2 classes 1 name": lambda h: h.update(class_names=h["class_names"][:1]),
    "names not strings": lambda h: h.update(class_names=[1, 2, 3]),
    "head classes": lambda h: h["head"].update(classes="3"),
    "layer shape": lambda h: h["layers"][0].update(shape="big"),
    "layer name unknown": lambda h: h["layers"][0].update(name="../x"),
    "encoding": lambda h: h["layers"][1].update(encoding="rle"),
    "norm eps NaN": lambda h: h["norms"][0].update(eps=float("nan")),
    "payload kind": lambda h: h["payload"].update(kind="pickle"),
    "header a list": lambda h: (h.clear(), h.update(x=[1])),
    "net": lambda h: h.update(net=[1]),
    "signature": lambda h: h.update(signature={"algorithm": "rsa", "key_id": "x"}),
}


FITS_NO_BUNDLE = {"layer name unknown"}


@pytest.mark.parametrize("case", sorted(BAD_HEADERS))
def test_patch_header_fields_of_the_wrong_type(w, deployed, app, tmp_path, case):
    p = tmp_path / "bad.mepatch"
    p.write_bytes(patch_bytes(w, BAD_HEADERS[case]))
    before = tree_hash(deployed.parent)
    one_error_line(cli(app, "patch", "apply", deployed, p))
    if case in FITS_NO_BUNDLE:  # a well-formed header that does not fit this bundle: inspect may show it
        assert cli(app, "patch", "inspect", p).exit_code == 0
    else:
        one_error_line(cli(app, "patch", "inspect", p))
    assert tree_hash(deployed.parent) == before


def test_disk_full_during_apply_is_one_line_and_leaves_the_bundle(w, tmp_path, app, monkeypatch):
    """A small tmpfs: the free-space check refuses first; with the check bypassed, the real ENOSPC in the
    middle of writing is undone (what this apply wrote is removed) and reported in one line."""
    if not IS_ROOT:
        pytest.skip("mounting a tmpfs needs root")
    size = sum(f.stat().st_size for f in w.base.iterdir())
    with small_fs(tmp_path / "fs", f"{(size * 5 // 2) // 4096 * 4096 + 8192}") as fs:
        if fs is None:
            pytest.skip("mount not permitted")
        b = fs / "bundle"
        shutil.copytree(w.base, b)
        before = tree_hash(fs)
        line = one_error_line(cli(app, "patch", "apply", b, w.p3))
        assert "free" in line and "the bundle is unchanged" in line, line
        assert tree_hash(fs) == before
        import mind_edge.runtime.patch as patch_mod

        monkeypatch.setattr(patch_mod, "check_free_space", lambda *a, **k: None)
        line = one_error_line(cli(app, "patch", "apply", b, w.p3))
        assert "No space left on device" in line and "The bundle is unchanged" in line, line
        assert tree_hash(fs) == before
        assert Bundle.load(b).num_tasks == 3


def test_read_only_file_system(w, tmp_path, app):
    if not IS_ROOT:
        pytest.skip("mounting a tmpfs needs root")
    with small_fs(tmp_path / "fs", "16m") as fs:
        if fs is None:
            pytest.skip("mount not permitted")
        b = fs / "bundle"
        shutil.copytree(w.base, b)
        apply_patch(b, w.p3)
        before = tree_hash(fs)
        assert remount_ro(fs)
        assert "Read-only file system" in one_error_line(cli(app, "patch", "apply", b, w.p4))
        assert "Read-only file system" in one_error_line(cli(app, "patch", "rollback", b))
        assert tree_hash(fs) == before


def test_bundle_json_of_the_wrong_types(bundle_copy, app, tmp_path):
    meta = json.loads((bundle_copy / "bundle.json").read_text())
    cases = {
        "temperature": lambda m: m.update(temperature=float("nan")),
        "temperature str": lambda m: m.update(temperature="1.5"),
        "tasks null": lambda m: m.update(tasks=None),
        "classes": lambda m: m["tasks"][0].update(classes=["4"]),
        "names": lambda m: m["tasks"][0].update(class_names=["a"]),
        "files": lambda m: m.update(files=[]),
        "sha": lambda m: m["files"]["model.onnx"].update(sha256=5),
        "shape": lambda m: m["input"].update(shape=[-1, 3, 30000, 30000]),
        "mean": lambda m: m["input"].update(mean=["x", 1, 2]),
        "outputs": lambda m: m.update(outputs=[{"name": 3}]),
        "int8 method": lambda m: m.update(precision={"precision": "int8", "int8": {"method": "--evil"}}),
    }
    for name, edit in cases.items():
        m = json.loads(json.dumps(meta))
        edit(m)
        (bundle_copy / "bundle.json").write_text(json.dumps(m))
        line = one_error_line(cli(app, "predict", bundle_copy, "x.png", "--json"))
        assert "bundle.json" in line, (name, line)
        assert name != "int8 method" or '"precision.int8.method" must be one of minmax' in line, line
        with pytest.raises(BundleError):
            Bundle.load(bundle_copy, verify=False)


def test_run_json_of_the_wrong_types(app, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    good = {
        "format": "mind-edge",
        "schema_version": 1,
        "net": {"arch": "resnet32", "in_channels": 1, "input_size": [8, 8], "width": 0.25, "capacity": 5},
        "scenario": {"dataset": "digits", "order": "seed", "seed": 0, "tasks": [[0, 1]], "class_names": ["a", "b"]},
        "train": {"method": "self", "epochs": 1, "distill_epochs": 1, "temperature": 1.0, "routing": "maxprob"},
        "seed": 0,
        "learned_tasks": [[0, 1]],
        "steps": [],
        "routing": {"policy": "future", "stats": [1, 2]},
    }
    (run / "run.json").write_text(json.dumps(good))
    (run / "checkpoint.safetensors").write_bytes(b"x")
    assert cli(app, "info", run).exit_code == 0  # unknown extra keys (e.g. a 'routing' section) are allowed
    bad = {
        "net null": lambda m: m.update(net=None),
        "tasks strings": lambda m: m["scenario"].update(tasks=[["0", "1"]]),
        "class id out of range": lambda m: m["scenario"].update(tasks=[[0, 7]]),
        "class_names": lambda m: m["scenario"].update(class_names="ab"),
        "width": lambda m: m["net"].update(width="wide"),
        "input_size": lambda m: m["net"].update(input_size=[8]),
        "train": lambda m: m.update(train=[]),
        "epochs": lambda m: m["train"].update(epochs=1.5),
        "steps": lambda m: m.update(steps=[{"tag_matrix": "x"}]),
        "final": lambda m: m.update(final={"tag": "high"}),
        "learned": lambda m: m.update(learned_tasks=[5]),
    }
    for name, edit in bad.items():
        m = json.loads(json.dumps(good))
        edit(m)
        (run / "run.json").write_text(json.dumps(m))
        for cmd in (("info", run), ("export", run, "--out", tmp_path / "out"), ("eval", run)):
            line = one_error_line(cli(app, *cmd))
            assert "run.json" in line, (name, cmd[0], line)


def test_a_png_declaring_30000_by_30000_pixels(rgb_bundle, app, tmp_path):
    import zlib

    from PIL import Image

    p = tmp_path / "huge.png"
    Image.fromarray(np.zeros((9, 13, 3), np.uint8)).save(p)
    data = bytearray(p.read_bytes())
    i = data.index(b"IHDR")
    data[i + 4 : i + 12] = struct.pack(">II", 30000, 30000)
    data[i + 17 : i + 21] = struct.pack(">I", zlib.crc32(bytes(data[i : i + 17])))
    p.write_bytes(bytes(data))
    for extra in ((), ("--resize",)):
        line = one_error_line(cli(app, "predict", rgb_bundle, p, *extra))
        assert "huge.png" in line


# ----------------------------------------------------------------------------- 10. exit codes


def test_already_applied_has_its_own_exit_code(w, deployed, app):
    apply_patch(deployed, w.p3)
    before = tree_hash(deployed.parent)
    r = cli(app, "patch", "apply", deployed, w.p3)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.exit_code == 3 and len(lines) == 1
    assert lines[0].startswith("nothing to do: ") and "already applied" in lines[0]
    with pytest.raises(AlreadyAppliedError):
        apply_patch(deployed, w.p3)
    assert tree_hash(deployed.parent) == before
    assert cli(app, "patch", "apply", deployed, w.p4).exit_code == 0


# ----------------------------------------------------------------------------- 11. modes


def test_files_follow_the_umask_and_secret_keys_stay_private(w, tmp_path):
    from mind_edge.fileio import atomic_write_json
    from mind_edge.runtime.signing import generate_keypair

    old = os.umask(0o022)
    try:
        b = make_bundle(tmp_path / "b", w.full.first_tasks(3))
        apply_patch(b, w.p3)
        kp = generate_keypair(tmp_path / "k")
        trust_key(b, kp.public_path)
        atomic_write_json(tmp_path / "run.json", {"x": 1})
    finally:
        os.umask(old)
    for p in [b, *b.rglob("*")]:
        want = 0o755 if p.is_dir() else 0o644
        assert p.stat().st_mode & 0o777 == want, (p, oct(p.stat().st_mode))
    assert kp.public_path.stat().st_mode & 0o777 == 0o644 and (tmp_path / "run.json").stat().st_mode & 0o777 == 0o644
    assert kp.secret_path.stat().st_mode & 0o777 == 0o600
    old = os.umask(0o077)
    try:
        b2 = make_bundle(tmp_path / "b2", w.full.first_tasks(3))
    finally:
        os.umask(old)
    assert (b2 / "model.onnx").stat().st_mode & 0o777 == 0o600  # the umask is respected both ways


# ----------------------------------------------------------------------------- 12. small ones


def test_predict_refuses_a_fifo_instead_of_hanging(rgb_bundle, tmp_path):
    fifo = tmp_path / "img.png"
    os.mkfifo(fifo)
    proc, seconds = run_cli("predict", rgb_bundle, fifo, timeout=60)
    assert "not a regular file" in one_line(proc) and seconds < 30
    proc, _ = run_cli("patch", "inspect", fifo, timeout=60)
    assert "not a regular file" in one_line(proc)


def test_no_nan_reaches_json_output(bundle_copy, app, rgb_images):
    meta = json.loads((bundle_copy / "bundle.json").read_text())
    meta["temperature"] = float("nan")
    (bundle_copy / "bundle.json").write_text(json.dumps(meta))
    assert "NaN" in one_error_line(cli(app, "predict", bundle_copy, rgb_images[0][0], "--json", "--resize"))


def test_a_reader_racing_the_first_apply_sees_one_whole_version(w, deployed, monkeypatch):
    """Deterministic replay of the race: the reader resolves the plain layout, then the first apply commits
    and removes the plain files before the reader reads them — it must load the live version instead."""
    import mind_edge.runtime.bundle as bundle_mod
    from mind_edge.runtime.predict import Runtime

    real = bundle_mod.resolve_version
    state = {"raced": False}

    def racing(root):
        out = real(root)
        if not state["raced"]:
            state["raced"] = True
            apply_patch(deployed, w.p3)
        return out

    monkeypatch.setattr(bundle_mod, "resolve_version", racing)
    b = Bundle.load(deployed)
    assert state["raced"] and b.version == "v0002" and b.num_tasks == 4
    monkeypatch.setattr(bundle_mod, "resolve_version", real)
    rollback(deployed)
    # a Runtime handed a plain Bundle object whose files went away opens the live version
    plain = make_bundle(deployed.parent / "plain", w.full.first_tasks(3))
    stale = Bundle.load(plain)
    apply_patch(plain, w.p3)
    with Runtime(stale) as rt:
        assert rt.bundle.version == "v0002" and rt.bundle.num_tasks == 4
        assert rt.predict(np.zeros((2, 1, 8, 8), np.float32)).label.shape == (2,)


def test_readers_during_first_applies_never_fail(w, tmp_path):
    """The issue's stress test, small: a reader thread opens the bundle again and again while its first
    patch is applied (plain -> versioned), for several fresh copies."""
    from mind_edge.runtime.predict import Runtime

    copies = []
    for i in range(4):
        copies.append(tmp_path / f"b{i}")
        shutil.copytree(w.base, copies[-1])
    errors, done, current, reads = [], threading.Event(), {"i": 0}, [0]

    def reader():
        while not done.is_set():
            try:
                with Runtime(copies[current["i"]]) as rt:
                    rt.predict(np.zeros((1, 1, 8, 8), np.float32))
                reads[0] += 1
            except Exception as exc:  # noqa: BLE001 - any failure is collected, and asserted absent below
                errors.append(exc)

    t = threading.Thread(target=reader)
    t.start()
    try:
        for i, b in enumerate(copies):
            current["i"] = i
            time.sleep(0.1)
            apply_patch(b, w.p3)
            time.sleep(0.1)
    finally:
        done.set()
        t.join()
    assert not errors and reads[0] > 4, (reads, errors[:3])
