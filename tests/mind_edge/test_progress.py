"""Output to a pipe or a file (issue 13): training progress per batch as plain lines, and tables
wide enough that numbers are not split across lines."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console

from mind_edge.console import LogReporter, RichReporter


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_log_reporter_prints_at_start_every_interval_and_at_the_end():
    out, clock = io.StringIO(), FakeClock()
    rep = LogReporter(stream=out, interval=5.0, clock=clock, heartbeat=False)
    rep.start("task 0 train", 20)
    for i in range(20):
        clock.now += 1.0  # one batch per second
        rep.advance(f"epoch {i // 10 + 1}/2 loss 0.5")
    rep.finish()
    lines = out.getvalue().splitlines()
    assert lines[0] == "task 0 train: started, 20 steps"
    assert lines[1] == "task 0 train: 5/20 (25%) epoch 1/2 loss 0.5, 5 s"
    assert [ln.split(":")[1].split()[0] for ln in lines[1:]] == ["5/20", "10/20", "15/20", "20/20", "20/20"]
    assert lines[-1].endswith(" done")


def test_heartbeat_repeats_the_state_while_a_batch_takes_long():
    out = io.StringIO()
    rep = LogReporter(stream=out, interval=0.2)
    rep.start("task 0 train", 10)
    rep.advance("epoch 1/1 loss 0.9")
    time.sleep(0.7)  # one batch that takes longer than the interval: the heartbeat speaks meanwhile
    rep.finish()
    lines = out.getvalue().splitlines()
    assert lines[0] == "task 0 train: started, 10 steps" and lines[-1].endswith(" done")
    beats = [ln for ln in lines[1:-1] if ln.startswith("task 0 train: 1/10 (10%) epoch 1/1 loss 0.9")]
    assert len(beats) >= 2, lines
    n = len(out.getvalue().splitlines())
    time.sleep(0.5)
    assert len(out.getvalue().splitlines()) == n  # finished: the heartbeat thread stopped


def test_rich_reporter_falls_back_to_plain_lines_off_a_terminal(capsys):
    console = Console(file=io.StringIO(), force_terminal=False)
    with RichReporter(console) as rep:
        rep.start("task 1 distill", 3)
        for _ in range(3):
            rep.advance("epoch 1/1 loss 0.1")
        rep.finish()
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "task 1 distill: started, 3 steps" and err[-1].startswith("task 1 distill: 3/3 (100%)")


@pytest.mark.slow
def test_piped_train_prints_per_batch_progress_at_least_every_10_seconds(tmp_path):
    """`mind-edge train | cat`: a progress line at least every 10 s, with per-batch counts."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "120"}
    env.pop("MIND_EDGE_DEFAULTS", None)
    cmd = [
        sys.executable,
        "-c",
        "from mind_edge.cli import main; main()",
        "train",
        "--dataset",
        "digits",
        "--tasks",
        "2",
        "--width",
        "0.25",
        "--epochs",
        "2",
        "--distill-epochs",
        "2",
        "--out",
        str(tmp_path / "run"),
        "--device",
        "cpu",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    stamped = []
    for line in proc.stdout:
        stamped.append((time.monotonic(), line.rstrip("\n")))
    assert proc.wait(timeout=300) == 0, "\n".join(ln for _, ln in stamped)
    progress = [(t, ln) for t, ln in stamped if re.match(r"task \d (train|distill): ", ln)]
    # 2 tasks x (train, distill): a start line and a 'done' line each, at least
    assert len(progress) >= 8, "\n".join(ln for _, ln in stamped)
    done = [ln for _, ln in progress if ln.endswith(" done")]
    assert len(done) == 4
    # one step per batch: 2 epochs x ceil(~290 images / 64) batches, not 2 steps (one per epoch)
    totals = {int(m.group(1)) for ln in done if (m := re.search(r": (\d+)/\1 \(100%\)", ln))}
    assert totals and min(totals) >= 2 * 4, done
    gaps = [b[0] - a[0] for a, b in zip(progress, progress[1:])]
    assert max(gaps) <= 10.0, (max(gaps), "\n".join(ln for _, ln in stamped))
    assert "TAG accuracy R[k, j]" in "\n".join(ln for _, ln in stamped)
    assert Path(tmp_path / "run" / "run.json").is_file()


def test_piped_tables_are_wide_unless_columns_says_otherwise():
    code = "from mind_edge.console import console, err_console; print(console.width, err_console.width)"
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert p.stdout.split() == ["160", "160"]  # rich's 80 columns split the bench table's numbers
    p = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**env, "COLUMNS": "100"}, check=True
    )
    assert p.stdout.split() == ["100", "100"]
