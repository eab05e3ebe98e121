"""The host commands of runs: ``train``, ``eval``, ``calibrate``, ``info`` and ``learn``.

They need PyTorch, which is imported inside each command after its cheap checks (see the package
docstring); the run tables (:func:`show_run`) are shared with ``mind-edge demo``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional, TypeVar

import typer
from rich.table import Table
from rich.text import Text

from mind_edge.cli.options import (
    ROUTING_HELP,
    DataRootOpt,
    DeviceOpt,
    DistillEpochsOpt,
    JsonResultOpt,
    RunDirArg,
)
from mind_edge.console import RichReporter, console, err_console, require_modules
from mind_edge.errors import CheckpointError, ConfigError, DataError, MindEdgeError
from mind_edge.fileio import sha256_file
from mind_edge.outputs import check_new_output
from mind_edge.textsafe import field_table, markup, text

if TYPE_CHECKING:  # the run.json record (torch-free); the commands read it through checkpoint
    from mind_edge.run_record import RunRecord

T = TypeVar("T")

# ----------------------------------------------------------------------------- run tables


def matrix_table(title: str, rows: Sequence[Sequence[float | None]], names: list[str] | None = None) -> Table:
    n = len(rows)
    table = Table(title=Text(title), title_justify="left")  # a plain Text: "R[k, j]" is not markup
    table.add_column("after task", justify="right")
    for j in range(n):
        table.add_column(f"T{j}" if not names else f"T{j} {names[j]}", justify="right")
    for k, row in enumerate(rows):
        table.add_row(str(k), *["" if v is None else f"{v:.3f}" for v in row])
    return table


def final_table(final: Mapping[str, float | None], title: str = "final metrics") -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k in ("tag", "taw", "routing", "avg_incremental_tag", "forgetting_tag", "bwt_tag"):
        if k in final:
            table.add_row(k, "n/a" if final[k] is None else f"{final[k]:.4f}")
    return table


def show_run(record: RunRecord) -> None:
    """The accuracy matrices and final metrics of a run's run.json."""
    if not record.steps:
        console.print("no task learned yet")
        return
    last = record.steps[-1]
    console.print(matrix_table("TAG accuracy R[k, j] (task unknown)", last.tag_matrix))
    console.print(matrix_table("TAW accuracy R[k, j] (task given)", last.taw_matrix))
    console.print(final_table(record.final or {}))


# ----------------------------------------------------------------------------- train


def _parse_size(value: Optional[str]) -> Optional[tuple[int, int]]:
    if value is None:
        return None
    try:
        parts = [int(v) for v in value.lower().replace("x", ",").split(",")]
    except ValueError:
        raise ConfigError(f"--image-size must look like 32 or 64,64 (H,W), got {value!r}") from None
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or min(parts) < 1:
        raise ConfigError(f"--image-size must look like 32 or 64,64 (H,W), got {value!r}")
    return parts[0], parts[1]


def _parse_ints(value: Optional[str], what: str) -> Optional[tuple[int, ...]]:
    if value is None:
        return None
    try:
        return tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise ConfigError(f"{what} must be a comma-separated list of integers, got {value!r}") from None


def check_dataset(dataset: str, root: Optional[str]) -> None:
    """The dataset name and, for an ImageFolder tree, its folder (before anything is loaded)."""
    from mind_edge.data import canonical_name

    name = canonical_name(dataset)
    if name == "imagefolder":
        if root is None:
            raise ConfigError("--dataset imagefolder needs --root <folder with train/<class>/ and test/<class>/>")
        if not Path(root).expanduser().is_dir():
            raise DataError(
                f"--root {root} does not exist or is not a folder; expected an ImageFolder tree "
                "with train/<class>/ and test/<class>/ (or val/)"
            )


def train(
    out: Annotated[Path, typer.Option("--out", "-o", help="Run directory to write (checkpoint, run.json, metrics).")],
    dataset: Annotated[
        str, typer.Option(help="digits | cifar10 | cifar100 | mnist | fashion-mnist | imagefolder")
    ] = "digits",
    root: Annotated[
        Optional[str],
        typer.Option("--root", "--data-root", help="Dataset folder (idx files, CIFAR pickles or an ImageFolder tree)."),
    ] = None,
    download: Annotated[
        bool, typer.Option(help="Let torchvision download CIFAR/MNIST into --root (needs internet).")
    ] = False,
    tasks: Annotated[int, typer.Option(help="Number of tasks the classes are split into.")] = 5,
    order: Annotated[str, typer.Option(help="Class order: seed | natural | icarl.")] = "seed",
    seed: Annotated[int, typer.Option(help="Seed of the class order, initialisation and data order.")] = 0,
    method: Annotated[
        str, typer.Option(help="self (self-distillation, default) | teacher (teacher distillation).")
    ] = "self",
    preset: Annotated[
        str, typer.Option(help="Hyper-parameter preset: fast | cifar100 | tinyimagenet | core50 | synbols.")
    ] = "fast",
    arch: Annotated[str, typer.Option(help="resnet32 (CIFAR-style) | resnet18 (64x64 inputs).")] = "resnet32",
    width: Annotated[float, typer.Option(help="Channel width multiplier.")] = 1.0,
    capacity: Annotated[
        Optional[int],
        typer.Option(
            help="Tasks the weights are split for (default: --tasks; larger leaves room for on-device tasks)."
        ),
    ] = None,
    image_size: Annotated[Optional[str], typer.Option(help="Resize ImageFolder images to H,W.")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Training epochs per task (overrides the preset).")] = None,
    distill_epochs: DistillEpochsOpt = None,
    lr: Annotated[Optional[float], typer.Option(help="Training learning rate (AdamW).")] = None,
    distill_lr: Annotated[Optional[float], typer.Option(help="Distillation learning rate.")] = None,
    milestones: Annotated[
        Optional[str], typer.Option(help="MultiStepLR milestones of training, e.g. 35 or 70,90.")
    ] = None,
    distill_milestones: Annotated[Optional[str], typer.Option(help="MultiStepLR milestones of distillation.")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Batch size.")] = None,
    beta: Annotated[Optional[float], typer.Option(help="Weight of the symmetric KL distillation term.")] = None,
    temperature: Annotated[Optional[float], typer.Option(help="Routing temperature T.")] = None,
    routing: Annotated[Optional[str], typer.Option(help=ROUTING_HELP + " (default: combined).")] = None,
    device: DeviceOpt = "auto",
    resume: Annotated[bool, typer.Option(help="Continue the run in --out at its next task.")] = False,
    stop_after: Annotated[
        Optional[int],
        typer.Option(
            help="Learn only the first N tasks of the scenario; the rest stay for later "
            "(--resume, or 'mind-edge learn' on the device)."
        ),
    ] = None,
) -> None:
    """Train MIND on a class-incremental scenario, one task after another."""
    # cheap checks first: nothing is imported or loaded before the arguments and --out are known good
    if not resume:
        check_new_output(out, "run directory", "or pass --resume to continue the run there")
    if stop_after is not None and not 1 <= stop_after <= tasks:
        raise ConfigError(f"--stop-after must be between 1 and --tasks ({tasks}), got {stop_after}")
    require_modules("torch", "safetensors")
    check_dataset(dataset, root)
    from mind_edge.run import RunSpec, train_run
    from mind_edge.train import preset as make_preset

    cfg = make_preset(
        preset,
        method=method,
        epochs=epochs,
        distill_epochs=distill_epochs,
        lr=lr,
        distill_lr=distill_lr,
        milestones=_parse_ints(milestones, "--milestones"),
        distill_milestones=_parse_ints(distill_milestones, "--distill-milestones"),
        batch_size=batch_size,
        beta=beta,
        temperature=temperature,
        routing=routing,
    )
    spec = RunSpec(
        dataset=dataset,
        root=root,
        download=download,
        tasks=tasks,
        order=order,
        seed=seed,
        arch=arch,
        width=width,
        capacity=capacity,
        image_size=_parse_size(image_size),
        train=cfg,
        device=device,
    )
    with RichReporter(err_console) as rep:
        result = train_run(spec, out, resume=resume, reporter=rep, stop_after=stop_after)
    show_run(result.record)
    console.print(f"run directory: [bold]{markup(out)}[/]")


# ----------------------------------------------------------------------------- eval, calibrate, info


def eval_run(
    run_dir: RunDirArg,
    temperature: Annotated[Optional[float], typer.Option(help="Routing temperature (default: the run's).")] = None,
    routing: Annotated[
        Optional[str],
        typer.Option(
            help=ROUTING_HELP + "; several comma-separated, or 'all', compare policies on the same sub-networks "
            "(default: the run's)."
        ),
    ] = None,
    root: DataRootOpt = None,
    device: DeviceOpt = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Re-evaluate a run on its test data (at another routing temperature, or with other routing policies)."""
    from mind_edge.run import evaluate_run, parse_policies

    names = parse_policies(routing)
    several = names is not None and len(names) > 1
    res = evaluate_run(
        run_dir,
        temperature=temperature,
        policy=names[0] if names else None,
        root=root,
        device=device,
        policies=names if several else None,
    )
    if as_json:
        console.print_json(json.dumps(res))
        return
    if several:
        table = Table(
            title=text(f"{run_dir} — T={res['temperature']}: routing policies on the same sub-networks"),
            title_justify="left",
        )
        for col in ("policy", "TAG", "TAW", "routing", "ECE"):
            table.add_column(col, justify="left" if col == "policy" else "right")
        for name, v in res["policies"].items():
            table.add_row(
                name, f"{v['tag_mean']:.4f}", f"{v['taw_mean']:.4f}", f"{v['routing_overall']:.4f}", f"{v['ece']:.4f}"
            )
        console.print(table)
        return
    table = Table(title=text(f"{run_dir} — T={res['temperature']} policy={res['policy']}"), title_justify="left")
    for col in ("task", "TAG", "TAW", "routing"):
        table.add_column(col, justify="right")
    for j, (a, b, r) in enumerate(zip(res["tag"], res["taw"], res["routing"])):
        table.add_row(str(j), f"{a:.4f}", f"{b:.4f}", f"{r:.4f}")
    table.add_row("mean", f"{res['tag_mean']:.4f}", f"{res['taw_mean']:.4f}", f"{res['routing_overall']:.4f}")
    console.print(table)
    console.print(text(f"ECE of the routed confidence: {res['ece']:.4f}"))


def calibrate(
    run_dir: Annotated[Path, typer.Argument(help="A run directory written by 'mind-edge train' (or 'learn').")],
    root: DataRootOpt = None,
    device: DeviceOpt = "cpu",
    routing: Annotated[
        Optional[str],
        typer.Option(help=ROUTING_HELP + ": the policy the run routes with from now on (default: combined)."),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Recompute the statistics of tasks that already have them.")
    ] = False,
) -> None:
    """Gather the routing statistics of a run trained before they existed, from each task's own training data.

    Nothing is retrained; the checkpoint and run.json are rewritten atomically. Then 'mind-edge eval RUN
    --routing all' compares the policies and 'mind-edge export' builds the graph with the run's policy.
    """
    from mind_edge.calibrate import calibrate_run

    res = calibrate_run(run_dir, root=root, device=device, force=force, routing=routing)
    console.print(
        text(
            f"{run_dir}: routing statistics gathered for task(s) {res.gathered or 'none'}"
            f"{f', kept for {res.kept}' if res.kept else ''} ({res.bytes_per_task / 1024:.1f} KiB per task, "
            f"{res.seconds:.1f} s); the run routes with {res.policy!r}"
        )
    )


def info(
    run_dir: RunDirArg,
    as_json: Annotated[bool, typer.Option("--json", help="Print run.json's summary as JSON.")] = False,
) -> None:
    """Show a run directory: architecture, scenario, hyper-parameters, metrics."""
    from mind_edge.checkpoint import CHECKPOINT, read_run_json

    record = read_run_json(run_dir)
    ck = Path(run_dir) / CHECKPOINT
    if not ck.is_file():
        raise CheckpointError(f"{ck} is missing")
    ok = sha256_file(ck) == record.checkpoint_sha256
    if as_json:
        summary = record.summary_json()
        summary["checkpoint_ok"] = ok
        console.print_json(json.dumps(summary))
        return
    table = field_table(run_dir)
    # a part this mind-edge cannot use (an unknown policy, say) is shown with the reason, not refused
    net, sc, tr = _usable(lambda: record.net), _usable(lambda: record.scenario), _usable(lambda: record.train)
    table.add_row(
        "architecture",
        text(
            f"{net.arch} width {net.width} input {net.in_channels}x{net.input_size[0]}x"
            f"{net.input_size[1]} capacity {net.capacity}"
            if not isinstance(net, MindEdgeError)
            else f"not usable: {net}"
        ),
    )
    table.add_row(
        "scenario",
        text(
            f"{sc.dataset}: {record.num_learned} of {len(sc.tasks)} tasks learned, order {sc.order} (seed {sc.seed})"
            if not isinstance(sc, MindEdgeError)
            else f"not usable: {sc}"
        ),
    )
    table.add_row(
        "method",
        text(
            f"{tr.method}-distillation, {tr.epochs}+{tr.distill_epochs} epochs, T={tr.temperature}, "
            f"routing {tr.routing}"
            if not isinstance(tr, MindEdgeError)
            else f"not usable: {tr}"
        ),
    )
    table.add_row("checkpoint", f"{ck.stat().st_size / 1e6:.2f} MB, sha256 {'verified' if ok else '[red]MISMATCH[/]'}")
    if not isinstance(sc, MindEdgeError):
        for t, classes in enumerate(sc.tasks):
            mark = "" if t < record.num_learned else " (not learned yet)"
            table.add_row(f"task {t}", text(", ".join(str(sc.class_names[c]) for c in classes) + mark))
    console.print(table)
    show_run(record)


def _usable(part: Callable[[], T]) -> T | MindEdgeError:
    """A typed part of a run record, or the error that says why this mind-edge cannot use it."""
    try:
        return part()
    except MindEdgeError as exc:
        return exc


# ----------------------------------------------------------------------------- learn


def learn(
    run_dir: Annotated[
        Path, typer.Argument(help="A run directory written by 'mind-edge train' (or an earlier learn).")
    ],
    data: Annotated[
        Path,
        typer.Option(
            "--data",
            "-d",
            help="ImageFolder of the new classes: train/<class>/* and test/<class>/* (or val/); without a test "
            "split, --holdout of each class is held out.",
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            help="New run directory to write (never the input run: learn does not rewrite a run in place).",
        ),
    ],
    epochs: Annotated[Optional[int], typer.Option(help="Training epochs (default: the run's).")] = None,
    distill_epochs: Annotated[Optional[int], typer.Option(help="Distillation epochs (default: the run's).")] = None,
    lr: Annotated[Optional[float], typer.Option(help="Training learning rate (default: the run's).")] = None,
    distill_lr: Annotated[
        Optional[float], typer.Option(help="Distillation learning rate (default: the run's).")
    ] = None,
    batch_size: Annotated[
        Optional[int],
        typer.Option(help="Batch size (default: the run's; with --memory-budget the largest that fits, at most this)."),
    ] = None,
    memory_budget: Annotated[
        Optional[float],
        typer.Option(
            "--memory-budget",
            help="Peak RSS budget in MB (2**20 bytes): measured trials pick the batch size, or learn fails before "
            "training.",
        ),
    ] = None,
    holdout: Annotated[
        float, typer.Option(help="Fraction of each class held out for testing when the folder has no test/ split.")
    ] = 0.2,
    device: DeviceOpt = "auto",
    as_json: JsonResultOpt = False,
) -> None:
    """Learn one more task from a folder of new classes (self-distillation; earlier tasks stay bit-identical)."""
    from mind_edge.learn import learn as learn_task

    with RichReporter(console) as rep:
        res = learn_task(
            run_dir,
            data,
            out,
            epochs=epochs,
            distill_epochs=distill_epochs,
            lr=lr,
            distill_lr=distill_lr,
            batch_size=batch_size,
            memory_budget_mb=memory_budget,
            device=device,
            holdout=holdout,
            reporter=rep,
        )
    if as_json:
        typer.echo(json.dumps(res.summary()))
        return
    table = field_table(f"learned task {res.task} → {res.out}")
    table.add_row("classes", text(", ".join(f"{n} (id {c})" for n, c in zip(res.class_names, res.classes))))
    table.add_row("data", text(f"{res.train_images} training images, {res.test_images} test images ({res.test_split})"))
    if res.new_task:
        nt = res.new_task
        table.add_row("new task", f"TAW {nt['taw']:.3f} · TAG {nt['tag']:.3f} · routed to it {nt['routing']:.3f}")
    f = res.final
    if f.get("tag") is not None:
        table.add_row(
            "all tasks",
            f"TAG {f['tag']:.3f} · TAW {f['taw']:.3f} · routing {f['routing']:.3f} "
            f"(tasks evaluated: {', '.join(map(str, res.evaluated_tasks))})",
        )
    table.add_row("batch size", str(res.batch_size))
    mem = f"peak RSS {res.peak_rss_mb:.0f} MB"
    if res.memory is not None:
        m = res.memory
        mem += (
            f" (budget {m.budget_mb:g} MB, predicted {m.predicted_peak_mb:.0f} MB from "
            + ", ".join(f"batch {t.batch_size}: +{t.increment_mb:.0f} MB" for t in m.trials)
            + ")"
        )
    table.add_row("memory", mem)
    table.add_row("time", f"{res.seconds:.1f} s")
    console.print(table)
