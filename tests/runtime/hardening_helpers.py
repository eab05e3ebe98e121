"""Helpers of the hardening tests: crafted patches, zip bombs, small file systems, CLI runs (torch-free)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
import subprocess
import sys
import zipfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from mind_edge.runtime.patch_format import MAGIC

ESC = "\x1b"


def split_patch(data: bytes) -> tuple[dict, bytes]:
    """``(header, payload)`` of patch bytes (no checks)."""
    off = len(MAGIC)
    (hlen,) = struct.unpack_from("<I", data, off)
    header = json.loads(data[off + 4 : off + 4 + hlen])
    off += 4 + hlen
    (plen,) = struct.unpack_from("<Q", data, off)
    return header, data[off + 8 : off + 8 + plen]


def frame_patch(header: dict, payload: bytes, *, sign_key: Path | None = None, fix_payload: bool = True) -> bytes:
    """Patch bytes for ``header`` + ``payload`` with a valid digest (and signature): an attacker who can
    write any patch file (the digest is no secret; only the signature needs the key)."""
    header = json.loads(json.dumps(header))
    if fix_payload and isinstance(header.get("payload"), dict):
        header["payload"]["bytes"] = len(payload)
        header["payload"]["sha256"] = hashlib.sha256(payload).hexdigest()
    head = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
    out = MAGIC + struct.pack("<I", len(head)) + head + struct.pack("<Q", len(payload)) + payload
    digest = hashlib.sha256(out).digest()
    sig = b""
    if sign_key is not None:
        from mind_edge.runtime.signing import sign_digest

        sig, _ = sign_digest(sign_key, digest)
    return out + digest + struct.pack("<H", len(sig)) + sig


def _npy_header(dtype: str, shape: tuple[int, ...]) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def zip_bomb_payload(base_payload: bytes, inflated_bytes: int = 2 << 30, member: str = "values.npy") -> bytes:
    """The .npz ``base_payload`` with ``member`` replaced by one that inflates to ``inflated_bytes`` of zeros
    (deflate: ~1/1000 of that), so the archive has exactly the members a patch holds."""
    out = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(base_payload)) as src,
        zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf,
    ):
        for name in src.namelist():
            if name != member:
                zf.writestr(name, src.read(name))
        with zf.open(member, "w", force_zip64=True) as fh:
            head = _npy_header("<f4", ((inflated_bytes - 128) // 4,))
            fh.write(head)
            left = inflated_bytes - len(head)
            block = bytes(16 << 20)
            while left > 0:
                n = min(left, len(block))
                fh.write(block[:n])
                left -= n
    return out.getvalue()


def run_cli(
    *args, timeout: float = 120, env: dict | None = None, cwd: Path | None = None, hwm_file: Path | None = None
) -> tuple[subprocess.CompletedProcess, float]:
    """``mind-edge ARGS`` in a fresh interpreter; returns the process and its wall time. With ``hwm_file``
    the child writes its /proc/self/status (VmHWM: peak RSS) there at exit."""
    import time

    code = (
        "import atexit, sys\n"
        + (
            f"atexit.register(lambda: open({str(hwm_file)!r}, 'w').write(open('/proc/self/status').read()))\n"
            if hwm_file
            else ""
        )
        + "sys.argv = ['mind-edge'] + sys.argv[1:]\n"
        "from mind_edge.cli import main\n"
        "main()\n"
    )
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", code, *[str(a) for a in args]],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
        cwd=cwd,
    )
    return proc, time.perf_counter() - t0


def vm_hwm_mb(status_file: Path) -> float:
    for line in status_file.read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc/self/status")


def one_line(proc: subprocess.CompletedProcess, code: int = 2, label: str = "error") -> str:
    """The subprocess printed exactly one ``label: …`` line on stderr, no traceback, and exited ``code``."""
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == code and len(lines) == 1 and lines[0].startswith(f"{label}: "), (
        proc.returncode,
        proc.stderr,
    )
    assert "Traceback" not in proc.stderr + proc.stdout
    return lines[0]


@contextmanager
def small_fs(folder: Path, size: str, *, readonly: bool = False):
    """A tmpfs of ``size`` mounted at ``folder`` (root only); yields None when mounting is not permitted."""
    folder.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True)
    if proc.returncode != 0:
        yield None
        return
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def remount_ro(folder: Path) -> bool:
    return subprocess.run(["mount", "-o", "remount,ro", str(folder)], capture_output=True).returncode == 0
