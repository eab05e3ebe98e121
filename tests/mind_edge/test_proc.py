"""mind_edge.core.proc: peak RSS of a fresh worker is its own, not its parent's (the learn drift)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from mind_edge.core.proc import WorkerError, current_rss_mb, maxrss_mb, peak_rss_mb, spawn_call, thread_env

linux = pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="VmHWM is Linux's")


def _ballast(mib: int) -> np.ndarray:
    return np.ones(mib * 2**20, np.uint8)  # written, so resident


@linux
def test_a_spawned_child_of_a_large_parent_reports_its_own_peak():
    ballast = _ballast(600)
    parent = current_rss_mb()
    assert parent > 600 and peak_rss_mb() >= parent
    child_peak = spawn_call(peak_rss_mb)
    assert 0 < child_peak < 300 < parent - 200  # a fresh interpreter, not the 600 MiB parent
    # why VmHWM: ru_maxrss of the same fresh child carries the parent's resident set over exec
    assert spawn_call(maxrss_mb) >= 0.9 * parent
    del ballast


def test_spawn_call_returns_results_and_reports_failures():
    assert spawn_call(thread_env, 3) == {"OMP_NUM_THREADS": "3", "OPENBLAS_NUM_THREADS": "3", "MKL_NUM_THREADS": "3"}
    before = os.environ.get("OMP_NUM_THREADS")
    assert spawn_call(os.getenv, "OMP_NUM_THREADS", env={"OMP_NUM_THREADS": "17"}) == "17"
    assert os.environ.get("OMP_NUM_THREADS") == before  # the parent's environment is restored
    with pytest.raises(WorkerError, match=r"failed: ValueError: invalid literal"):
        spawn_call(int, "not a number")
    with pytest.raises(WorkerError, match=r"died without a result \(exit code 3\)") as err:
        spawn_call(os._exit, 3)
    assert err.value.exitcode == 3 and not err.value.killed


@linux
def test_a_worker_does_not_run_the_parents_main_script(tmp_path):
    """spawn re-runs the parent's ``__main__`` script in the worker: from the ``mind-edge`` console script
    every bench/learn worker imported mind_edge.cli, typer and rich before it measured its peak."""
    (tmp_path / "heavy_marker.py").write_text("BALLAST = b'\\x01' * (300 * 2**20)  # written, so resident\n")
    (tmp_path / "probe.py").write_text(
        textwrap.dedent("""
        import sys
        from mind_edge.core.proc import peak_rss_mb

        def probe():
            return "heavy_marker" in sys.modules, peak_rss_mb()
    """)
    )
    (tmp_path / "main_script.py").write_text(
        textwrap.dedent("""
        import json
        import heavy_marker  # what the parent's script imports at its top, like mind-edge's mind_edge.cli
        from probe import probe
        from mind_edge.core.proc import peak_rss_mb, spawn_call

        def local():  # a target defined in the script itself: its worker must run the script to find it
            return "local"

        if __name__ == "__main__":
            print(json.dumps([peak_rss_mb(), *spawn_call(probe), spawn_call(local)]))
    """)
    )
    out = subprocess.run(
        [sys.executable, str(tmp_path / "main_script.py")], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    parent, imported, child_peak, local = json.loads(out.stdout)
    assert parent > 300
    assert not imported  # the worker did not run the parent's script ...
    assert 0 < child_peak < 100  # ... so its peak is its own, not the script's 300 MiB again
    assert local == "local"


@linux
def test_learn_memory_trial_from_a_large_parent_measures_the_trial(tmp_path):
    """``learn --memory-budget``'s trial used ru_maxrss: a child of a 613 MiB parent reported 613 MiB."""
    from learn_helpers import TINY, make_run

    from mind_edge.data import REFERENCE_SPECS
    from mind_edge.learn import run_trial
    from mind_edge.train import TrainConfig

    run = make_run(tmp_path / "run4")
    ballast = _ballast(1024)
    parent = current_rss_mb()
    trial = run_trial(run, 8, 2, REFERENCE_SPECS["digits"].to_json(), TrainConfig(**TINY).to_json(), 0, "cpu")
    assert 0 < trial.baseline_mb <= trial.peak_mb < parent - 500  # the trial's own peak, not the parent's
    assert trial.increment_mb < 500
    del ballast
