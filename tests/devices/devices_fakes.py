"""Shared helpers for tests/devices: fake root filesystems and a fake tegrastats executable.

The fake files follow the shape of the real ones (/etc/nv_tegra_release, NUL-terminated
/proc/device-tree/model, /proc/cpuinfo, /proc/meminfo); they are test fixtures, not recordings.
"""

from __future__ import annotations

import sys
from pathlib import Path

DATA = Path(__file__).parent / "data"
RECORDINGS = DATA / "tegrastats"


def arm_cpuinfo(cores: int, implementer: str = "0x41", part: str = "0xd42") -> str:
    block = (
        "processor\t: {i}\nBogoMIPS\t: 62.50\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics\n"
        "CPU implementer\t: {imp}\nCPU architecture: 8\nCPU variant\t: 0x1\nCPU part\t: {part}\nCPU revision\t: 1\n\n"
    )
    return "".join(block.format(i=i, imp=implementer, part=part) for i in range(cores))


def x86_cpuinfo(cores: int, model: str = "Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz") -> str:
    block = (
        "processor\t: {i}\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 106\nmodel name\t: {model}\n"
        "flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sep avx2 avx512f\n\n"
    )
    return "".join(block.format(i=i, model=model) for i in range(cores))


def meminfo(total_kb: int) -> str:
    return f"MemTotal:       {total_kb} kB\nMemFree:         1234567 kB\nMemAvailable:    2345678 kB\n"


def make_root(
    root: Path,
    *,
    release: str | None = None,
    model: str | None = None,
    compatible: list[str] | None = None,
    cpuinfo: str | None = None,
    mem_kb: int | None = None,
) -> Path:
    if release is not None:
        (root / "etc").mkdir(parents=True, exist_ok=True)
        (root / "etc" / "nv_tegra_release").write_text(release + "\n")
    dt = root / "proc" / "device-tree"
    if model is not None:
        dt.mkdir(parents=True, exist_ok=True)
        (dt / "model").write_bytes(model.encode() + b"\0")
    if compatible is not None:
        dt.mkdir(parents=True, exist_ok=True)
        (dt / "compatible").write_bytes(b"".join(c.encode() + b"\0" for c in compatible))
    (root / "proc").mkdir(parents=True, exist_ok=True)
    if cpuinfo is not None:
        (root / "proc" / "cpuinfo").write_text(cpuinfo)
    if mem_kb is not None:
        (root / "proc" / "meminfo").write_text(meminfo(mem_kb))
    return root


R36_4_0 = (
    "# R36 (release), REVISION: 4.0, GCID: 37537400, BOARD: generic, EABI: aarch64, DATE: Fri Sep 13 04:36:44 UTC 2024"
)
R35_2_1 = (
    "# R35 (release), REVISION: 2.1, GCID: 32413640, BOARD: t186ref, EABI: aarch64, DATE: Tue Jan 24 23:38:33 UTC 2023"
)
R35_4_1 = (
    "# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref, EABI: aarch64, DATE: Tue Aug  1 19:57:35 UTC 2023"
)
R32_7_1 = (
    "# R32 (release), REVISION: 7.1, GCID: 29818004, BOARD: t186ref, EABI: aarch64, DATE: Sat Feb 19 17:07:00 UTC 2022"
)


def fake_tegrastats(
    tmp: Path,
    lines: list[str],
    *,
    exit_code: int | None = None,
    stderr: str = "",
    argv_log: Path | None = None,
) -> Path:
    """Write an executable that behaves like tegrastats: prints ``lines`` (cycling) every --interval ms.

    With ``exit_code`` it prints ``stderr`` and exits at once instead.
    """
    rec = tmp / "recording.txt"
    rec.write_text("\n".join(lines) + "\n")
    script = tmp / "tegrastats"
    script.write_text(
        f"""#!{sys.executable}
import sys, time
args = sys.argv[1:]
if {str(argv_log) if argv_log else ""!r}:
    open({str(argv_log) if argv_log else ""!r}, "w").write(" ".join(args))
if {exit_code!r} is not None:
    sys.stderr.write({stderr!r} + "\\n")
    sys.stderr.flush()
    sys.exit({exit_code!r})
interval_ms = int(args[args.index("--interval") + 1]) if "--interval" in args else 1000
lines = [l for l in open({str(rec)!r}).read().splitlines() if l.strip()]
i = 0
while True:
    sys.stdout.write(lines[i % len(lines)] + "\\n")
    sys.stdout.flush()
    i += 1
    time.sleep(interval_ms / 1000.0)
"""
    )
    script.chmod(0o755)
    return script


def recording(name: str) -> list[str]:
    return [line for line in (RECORDINGS / name).read_text().splitlines() if line.strip()]
