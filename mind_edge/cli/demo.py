"""``mind-edge demo``: renders :func:`mind_edge.demo.run_demo` (the pipeline lives there)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from rich.table import Table

from mind_edge.cli.host import show_run
from mind_edge.cli.options import DeviceOpt, DistillEpochsOpt
from mind_edge.cli.runtime import render_bench
from mind_edge.console import RichReporter, console, err_console, require_modules
from mind_edge.demo_config import DemoConfig
from mind_edge.textsafe import field_table

if TYPE_CHECKING:  # the torch side, imported by the command itself
    from mind_edge.demo import DemoPrediction, DemoResult
    from mind_edge.export.exporter import ExportResult
    from mind_edge.run import RunResult


class _Renderer:
    """A :class:`mind_edge.demo.DemoListener` that prints each step of the demo as it finishes."""

    def step(self, title: str) -> None:
        console.rule(f"[bold]{title}")

    def trained(self, run: RunResult) -> None:
        show_run(run.record)

    def exported(self, exp: ExportResult) -> None:
        console.print(
            f"bundle {exp.bundle}: model.onnx {exp.model_bytes / 1e3:.1f} kB "
            f"({exp.ratio_to_dense:.2f}× one dense fp32 model; {exp.num_tasks} separate sub-networks would be "
            f"{exp.naive_bytes / 1e3:.1f} kB); validation {'passed' if exp.passed else 'FAILED'}"
        )

    def predicted(self, predictions: tuple[DemoPrediction, ...], providers: tuple[str, ...]) -> None:
        table = Table(title=f"predictions ({', '.join(providers)})", title_justify="left")
        for col in ("file", "true", "predicted", "task", "confidence"):
            table.add_column(col, justify="right" if col != "file" else "left")
        for p in predictions:
            table.add_row(
                p.file.name,
                str(p.truth),
                f"[{'green' if p.correct else 'red'}]{p.class_name}[/]",
                str(p.task),
                f"{p.confidence:.3f}",
            )
        console.print(table)

    def benchmarked(self, report: Mapping[str, Any]) -> None:
        render_bench(report, console)


def summary_table(res: DemoResult) -> Table:
    """The demo's results in one table: accuracy, bundle, fidelity, predictions, latency, time."""
    table = field_table("mind-edge demo summary")
    f, paper, exp = res.run.final, res.maxprob, res.export
    v = exp.summary()["validation"]
    table.add_row(
        "accuracy (digits/5)",
        f"TAG {f['tag']:.3f} · TAW {f['taw']:.3f} · routing {f['routing']:.3f} · "
        f"forgetting {f['forgetting_tag']:.3f} (routing policy {res.policy})",
    )
    table.add_row(
        "same sub-networks, maxprob routing",
        f"TAG {paper['tag_mean']:.3f} · routing {paper['routing_overall']:.3f} (MIND's max-probability rule)",
    )
    table.add_row("bundle", f"{exp.bundle} · {exp.model_bytes / 1e3:.1f} kB · {exp.layout} layout · opset {exp.opset}")
    table.add_row(
        "ONNX vs PyTorch",
        f"max |Δ task_logits| {v['max_abs_diff'].get('task_logits', float('nan')):.2e} · "
        f"label/task agreement {v['agreement']}",
    )
    table.add_row("predict (PNG files)", f"{res.correct}/{len(res.predictions)} correct")
    for row in (res.bench or {}).get("results", []):
        if row.get("p50_ms") is not None:
            table.add_row(
                f"latency {row['backend']} batch {row['batch']}",
                f"p50 {row['p50_ms']:.2f} ms · {row['throughput_ips']:.0f} images/s",
            )
    table.add_row(
        "time",
        " · ".join(f"{k} {s:.1f} s" for k, s in res.seconds.items()) + f" · total {res.total_seconds:.1f} s",
    )
    return table


def demo(
    out: Annotated[
        Path,
        typer.Option("--out", "-o", help="Folder for the demo's run, bundle and images (must be new or empty)."),
    ] = Path("runs/demo"),
    overwrite: Annotated[
        bool,
        typer.Option(
            help="Replace the outputs of an earlier demo in --out (only those: files the demo did not write stay)."
        ),
    ] = False,
    epochs: Annotated[Optional[int], typer.Option(help="Training epochs per task (default: the fast preset).")] = None,
    distill_epochs: DistillEpochsOpt = None,
    width: Annotated[float, typer.Option(help="Channel width multiplier of the ResNet-32.")] = 1.0,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
    device: DeviceOpt = "cpu",
    images_per_class: Annotated[int, typer.Option(help="Test images written as PNG files and predicted.")] = 2,
    bench_seconds: Annotated[
        float,
        typer.Option(help="Timed seconds per backend and batch in the benchmark step (0 skips it)."),
    ] = 1.0,
) -> None:
    """Offline end to end on scikit-learn's digits: train → export → validate → predict → benchmark."""
    cfg = DemoConfig(
        out=out,
        overwrite=overwrite,
        epochs=epochs,
        distill_epochs=distill_epochs,
        width=width,
        seed=seed,
        device=device,
        images_per_class=images_per_class,
        bench_seconds=bench_seconds,
    )
    cfg.check()  # a wrong --out or option is one line at once, before torch loads (run_demo checks again)
    require_modules("torch", "safetensors", "sklearn", "onnx", "onnxruntime")
    from mind_edge.demo import run_demo

    # the progress bar is live during training only (run_demo enters it)
    res = run_demo(cfg, reporter=RichReporter(err_console), listener=_Renderer())
    console.print(summary_table(res))
