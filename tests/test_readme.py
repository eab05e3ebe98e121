"""The README's commands run as written, in order, on a fresh copy of the tree (issue 13).

Every fenced block whose info string is exactly ``bash`` is executed, line by line, top to bottom,
in one temporary copy of the project (tracked files plus untracked ones git does not ignore: no
``runs/``, ``bundles/`` or ``keys/``), so a block that uses what an earlier one made (the demo's
images, ``runs/digits-cap8``) must come after it. A second word on the fence names why a whole
block is not run here (:data:`BLOCK_TAGS`); inside run blocks, lines matching :data:`SKIP_RULES`
(installs, the test suite itself, CUDA, downloads, the large datasets, multi-minute benchmark
protocols) are skipped with their reason.

Small budgets come from ``MIND_EDGE_DEFAULTS`` (README, Development): a JSON file of option
defaults per command, read by the CLI (click's ``default_map``) and by the example scripts. It
replaces only defaults; what the README writes on a command line is used as written.

``mind-edge …`` lines run through the CLI's typer app in this process and ``python script.py``
lines through :mod:`runpy` (torch is imported once instead of twenty times); anything else runs
in ``bash``. A command passes when it exits 0. Afterwards ``git status`` of the copy must show
no untracked file: everything the README writes is in ``.gitignore``'s folders.
"""

from __future__ import annotations

import json
import re
import runpy
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from tree_helpers import ROOT, copy_source_tree

README = ROOT / "README.md"

#: A word after ``bash`` on a fence: the block is documentation of something the test cannot run here.
BLOCK_TAGS = {
    "device": "runs on a Jetson or against one over ssh",
    "gpu": "needs an NVIDIA GPU",
    "data": "needs a dataset that is not part of a clone (downloads, ../shared, Debian packages)",
}

#: Lines of run blocks that are skipped, with the reason (first match wins).
SKIP_RULES = [
    (r"^(python3? -m venv\b|\S*pip install\b)", "installs packages: the test runs in the environment that runs it"),
    (r"^source \S*activate$", "activates the environment the test already runs in"),
    (r"-m pytest\b", "the test suite itself"),
    (r"^bash \.ci/run$", "CI itself: a fresh environment and the whole suite"),
    (r"--device cuda\b", "needs a CUDA GPU"),
    (r"--download\b", "downloads a dataset"),
    (r"\.\./shared/|/tmp/cifar10-jpg", "the 60,000-image CIFAR-10 JPEG tree from ../shared (minutes)"),
    (r"--dataset fashion-mnist\b", "Fashion-MNIST: 70,000 images from Debian's package (minutes)"),
    (r"^python3? benchmarks/", "a benchmark protocol of minutes, run by hand"),
    (r"--index-url\b", "downloads from another package index"),
]

#: The small budgets (MIND_EDGE_DEFAULTS): one training epoch and no distillation epoch per task
#: (the prune still runs), width 0.25, 20 ms benchmark timings in this process on one thread.
BUDGETS = {
    "demo": {"epochs": 1, "distill_epochs": 0, "width": 0.25, "images_per_class": 1, "bench_seconds": 0},
    "train": {"epochs": 1, "distill_epochs": 0, "width": 0.25, "batch_size": 128},
    "export": {"samples": 32},
    "learn": {"epochs": 1, "distill_epochs": 0},
    "bench": {
        "min_seconds": 0.02,
        "warmup_seconds": 0.01,
        "min_iters": 2,
        "isolate": False,
        "gemm": False,
        "width": 0.25,
        "threads": 1,
    },
    "on_device_update": {"quick": True},
}

#: Commands the README must keep (and this test must run): the path a newcomer follows.
MUST_RUN = (
    "mind-edge demo",
    "mind-edge train",
    "mind-edge export",
    "mind-edge predict",
    "mind-edge bench",
    "mind-edge learn",
    "mind-edge keygen",
    "mind-edge patch create",
    "mind-edge patch apply",
    "python examples/on_device_update.py",
)


@dataclass(frozen=True)
class Command:
    line: int  # README line number
    text: str
    argv: tuple[str, ...]
    shell: bool  # needs bash (pipes, redirections, ';')
    skip: str | None  # why it is not run


def _split(text: str) -> list[tuple[str, list[str], bool]]:
    """One README line → its '&&'-separated commands as (text, argv, needs a shell)."""
    lex = shlex.shlex(text, posix=True, punctuation_chars=True)
    lex.whitespace_split = True
    lex.commenters = "#"
    tokens = list(lex)
    out, cur = [], []
    for tok in tokens + ["&&"]:
        if tok == "&&":
            if cur:
                shell = any(t and set(t) <= set("();<>|&") for t in cur)
                out.append((" ".join(shlex.quote(t) for t in cur), cur, shell))
            cur = []
        else:
            cur.append(tok)
    return out


def readme_commands(text: str) -> list[Command]:
    commands: list[Command] = []
    fence: str | None = None
    pending, start = "", 0
    for n, raw in enumerate(text.splitlines(), 1):
        if fence is None:
            m = re.match(r"^```(\S*)\s*(.*)$", raw)
            if m:
                fence = raw
                lang, tags = m.group(1), m.group(2).split()
                block_skip = None
                if lang != "bash":
                    block_skip = "not a bash block"
                elif tags:
                    unknown = [t for t in tags if t not in BLOCK_TAGS]
                    assert not unknown, (
                        f"README.md:{n}: unknown block tag(s) {unknown}; use one of {sorted(BLOCK_TAGS)}"
                    )
                    block_skip = "; ".join(BLOCK_TAGS[t] for t in tags)
            continue
        if raw.startswith("```"):
            fence = None
            continue
        if block_skip == "not a bash block":
            continue
        if not pending:
            start = n
        pending += raw[:-1] + " " if raw.endswith("\\") else raw
        if raw.endswith("\\"):
            continue
        line, pending = pending.strip(), ""
        if not line or line.startswith("#"):
            continue
        for cmd_text, argv, shell in _split(line):
            skip = block_skip
            if skip is None:
                skip = next((why for rule, why in SKIP_RULES if re.search(rule, cmd_text)), None)
            commands.append(Command(start, cmd_text, tuple(argv), shell, skip))
    return commands


def _program(argv: tuple[str, ...]) -> str:
    prog = Path(argv[0]).name if argv[0].startswith(".venv/") else argv[0]
    if prog in ("python", "python3") and len(argv) > 1:
        return f"python {argv[1]}"
    if prog == "mind-edge":
        words = [a for a in argv[1:3] if not a.startswith("-")]
        sub = words[:2] if words[:1] == ["patch"] else words[:1]
        return " ".join(["mind-edge", *sub])
    return prog


def test_readme_blocks_parse_and_every_skip_has_a_reason():
    cmds = readme_commands(README.read_text(encoding="utf-8"))
    ran = [c for c in cmds if c.skip is None]
    assert ran, "README.md has no runnable bash command"
    names = {_program(c.argv) for c in ran}
    missing = [m for m in MUST_RUN if m not in names]
    assert not missing, f"README.md no longer runs {missing} in a plain ```bash block"
    for c in ran:  # what runs is the CLI, a script of this tree, or a plain shell command
        if _program(c.argv).startswith("python "):
            assert (ROOT / c.argv[1]).is_file(), f"README.md:{c.line}: {c.argv[1]} does not exist"


def _run_cli(argv: list[str]) -> tuple[int, str]:
    from typer.testing import CliRunner

    from mind_edge.cli import app

    r = CliRunner().invoke(app, argv)
    out = r.output
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        import traceback

        out += "".join(traceback.format_exception(r.exception))
    return r.exit_code, out


def _run_script(argv: list[str]) -> tuple[int, str]:
    saved = sys.argv
    sys.argv = list(argv)
    try:
        runpy.run_path(argv[0], run_name="__main__")
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = saved
    return code, ""


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.usefixtures("one_torch_thread")
def test_readme_commands_run_in_order_on_a_fresh_copy(tmp_path, monkeypatch, capsys):
    work = copy_source_tree(tmp_path / "clone")
    git = shutil.which("git")
    if git:
        subprocess.run([git, "init", "-q"], cwd=work, check=True)
        subprocess.run([git, "add", "-A"], cwd=work, check=True)
    defaults = tmp_path / "budgets.json"
    defaults.write_text(json.dumps(BUDGETS))
    monkeypatch.setenv("MIND_EDGE_DEFAULTS", str(defaults))
    monkeypatch.setenv("COLUMNS", "120")
    import torch

    import mind_edge.cli  # noqa: F401  (imported from this tree before the working directory changes)

    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", ".")])  # never import from the copy
    monkeypatch.chdir(work)
    venv_bin = str(Path(sys.executable).parent)
    env_path = f"{venv_bin}:{__import__('os').environ.get('PATH', '')}"

    log = []
    for c in readme_commands((work / "README.md").read_text(encoding="utf-8")):
        if c.skip:
            log.append(f"README.md:{c.line}: skipped ({c.skip}): {c.text}")
            continue
        t0 = time.perf_counter()
        # every command starts as in a fresh process with OMP_NUM_THREADS=1: an in-process 'bench' leaves
        # torch on its own thread count, and two spinning threads on a busy 2-core machine cost ~9x the CPU
        torch.set_num_threads(1)
        prog = Path(c.argv[0]).name if c.argv[0].startswith(".venv/") else c.argv[0]
        if c.shell or prog not in ("mind-edge", "python", "python3"):
            p = subprocess.run(
                ["bash", "-c", c.text],
                cwd=work,
                capture_output=True,
                text=True,
                timeout=300,
                env={**__import__("os").environ, "PATH": env_path},
            )
            code, out = p.returncode, p.stdout + p.stderr
        elif prog == "mind-edge":
            code, out = _run_cli(list(c.argv[1:]))
        else:
            assert c.argv[1].endswith(".py"), f"README.md:{c.line}: only 'python script.py' lines are run: {c.text}"
            code, out = _run_script(list(c.argv[1:]))
        captured = capsys.readouterr()
        out += captured.out + captured.err
        log.append(f"README.md:{c.line}: exit {code} in {time.perf_counter() - t0:.1f} s: {c.text}")
        assert code == 0, "\n".join(log) + f"\n--- output of README.md:{c.line} ---\n{out[-6000:]}"
    print("\n".join(log))
    if git:
        status = subprocess.run(
            [git, "status", "--porcelain", "--untracked-files=all"],
            cwd=work,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        untracked = [ln[3:] for ln in status.splitlines() if ln.startswith("??")]
        assert not untracked, f"README commands left files that .gitignore does not cover: {untracked[:20]}"
