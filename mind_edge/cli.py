"""The ``mind-edge`` command line (typer + rich).

Only this module parses user input; library functions take typed arguments. Heavy
packages are imported inside the commands, so ``mind-edge predict`` on a device without
PyTorch never imports it. Every :class:`MindEdgeError` becomes one red line on stderr and
exit code 2.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from mind_edge.core.routing import POLICIES
from mind_edge.console import console, err_console, fail, handle_errors, require_modules
from mind_edge.errors import MindEdgeError
from mind_edge.textsafe import markup, text

ROUTING_HELP = "Routing policy: " + " | ".join(POLICIES)
app = typer.Typer(
    name="mind-edge",
    help="MIND class-incremental learning for the edge: train, export, run and extend on device.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
log = logging.getLogger("mind_edge")

#: Environment variable naming a JSON file of option defaults per command (click's default_map):
#: ``{"train": {"epochs": 1}, "patch": {"create": {...}}}``. Options given on the command line win.
DEFAULTS_ENV = "MIND_EDGE_DEFAULTS"


def _setup_logging(verbose: bool) -> None:
    from rich.logging import RichHandler

    root = logging.getLogger("mind_edge")
    if not any(isinstance(h, RichHandler) for h in root.handlers):
        handler = RichHandler(console=err_console, show_path=False, show_time=False, markup=False)
        handler.addFilter(_one_clean_line)
        root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.WARNING)


def _one_clean_line(record: logging.LogRecord) -> bool:
    """Log messages carry data (names, paths): one line, no control characters, never markup."""
    from mind_edge.textsafe import clean

    record.msg, record.args = clean(record.getMessage()), None
    return True


def read_defaults(section: str | None = None) -> dict:
    """Option defaults from the JSON file named by ``$MIND_EDGE_DEFAULTS`` (``{}`` when unset).

    ``section`` picks one key (e.g. a script's name); the CLI uses the whole object as click's
    ``default_map`` (one key per command, nested for groups: ``{"patch": {"create": {...}}}``).
    """
    from mind_edge.errors import ConfigError

    path = os.environ.get(DEFAULTS_ENV)
    if not path:
        return {}
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{DEFAULTS_ENV}={path} must name a readable JSON file of option defaults per command "
                          f"({exc}); unset it or fix the file") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{DEFAULTS_ENV}={path} must hold a JSON object (command -> {{option: default}}), "
                          f"got {type(data).__name__}")
    if section is not None:
        data = data.get(section, {})
        if not isinstance(data, dict):
            raise ConfigError(f"{DEFAULTS_ENV}={path}: {section!r} must be an object of option defaults")
    return data


def _version_callback(value: bool) -> None:
    if value:
        from mind_edge import __version__

        typer.echo(f"mind-edge {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    ctx: typer.Context,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log debug details.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version_callback, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    _setup_logging(verbose)
    try:
        defaults = read_defaults()
    except MindEdgeError as exc:
        raise fail(str(exc)) from None
    if defaults:
        # option defaults per command for every sub-command of this run (README: MIND_EDGE_DEFAULTS)
        ctx.default_map = {**(ctx.default_map or {}), **defaults}


# ----------------------------------------------------------------------------- progress


class LogReporter:
    """Implements mind_edge.train.Reporter as plain progress lines, for logs, pipes and nohup.

    One line when a stage starts, then one at least every ``interval`` seconds, and one when it
    ends: ``task 0 train: 120/500 (24%) epoch 3/10 loss 0.532, 4 s``. Lines are written after a
    batch once ``interval`` has passed; with ``heartbeat`` a background thread also repeats the
    last state when a batch takes longer than that (a slow or busy machine), so a log never goes
    quiet for more than ``interval`` seconds while a stage runs.
    """

    def __init__(self, stream=None, interval: float = 5.0, clock=time.monotonic, heartbeat: bool = True):
        import threading

        self.stream = stream
        self.interval = float(interval)
        self.clock = clock
        self.heartbeat = heartbeat
        self._label: str | None = None
        self._total = self._done = 0
        self._t0 = self._last = 0.0
        self._info = ""
        self._lock = threading.Lock()
        self._stop: threading.Event | None = None

    def _beat(self, stop) -> None:
        while not stop.wait(self.interval / 4):
            with self._lock:
                if self._label is not None and self.clock() - self._last >= self.interval:
                    self._emit(self._line())

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def _emit(self, text: str) -> None:
        stream = self.stream if self.stream is not None else sys.stderr
        print(text, file=stream, flush=True)
        self._last = self.clock()

    def _line(self) -> str:
        pct = f" ({100 * self._done // self._total}%)" if self._total else ""
        info = f" {self._info}" if self._info else ""
        return f"{self._label}: {self._done}/{self._total}{pct}{info}, {self.clock() - self._t0:.0f} s"

    def start(self, label: str, total: int) -> None:
        import threading

        with self._lock:
            self._label, self._total, self._done, self._info = label, int(total), 0, ""
            self._t0 = self.clock()
            self._emit(f"{label}: started, {self._total} steps")
        if self.heartbeat and self._stop is None:
            self._stop = threading.Event()
            threading.Thread(target=self._beat, args=(self._stop,), name="mind-edge-progress", daemon=True).start()

    def advance(self, info: str = "") -> None:
        with self._lock:
            if self._label is None:
                return
            self._done += 1
            self._info = info
            if self.clock() - self._last >= self.interval:
                self._emit(self._line())

    def finish(self) -> None:
        if self._stop is not None:
            self._stop.set()
            self._stop = None
        with self._lock:
            if self._label is not None:
                self._emit(self._line() + " done")
                self._label = None


class RichReporter:
    """Implements mind_edge.train.Reporter with a rich progress bar per training stage.

    The bar needs a terminal: when ``console`` is not one (a pipe, a file, CI logs, nohup), the
    progress is written as plain lines on stderr instead (:class:`LogReporter`), so stdout stays
    clean for ``--json``.
    """

    def __init__(self, console: Console, transient: bool = True):
        self._plain = None if console.is_terminal else LogReporter()
        self.progress = None
        if self._plain is None:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self.progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                console=console, transient=transient,
            )
        self._task = None

    def __enter__(self):
        if self.progress is not None:
            self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        if self.progress is not None:
            return self.progress.__exit__(*exc)
        return False

    def start(self, label: str, total: int) -> None:
        if self._plain is not None:
            return self._plain.start(label, total)
        self._task = self.progress.add_task(label, total=total, info="")

    def advance(self, info: str = "") -> None:
        if self._plain is not None:
            return self._plain.advance(info)
        if self._task is not None:
            self.progress.update(self._task, advance=1, info=info)

    def finish(self) -> None:
        if self._plain is not None:
            return self._plain.finish()
        if self._task is not None:
            self.progress.remove_task(self._task)
            self._task = None


def matrix_table(title: str, rows: list[list[float | None]], names: list[str] | None = None) -> Table:
    n = len(rows)
    from rich.text import Text

    table = Table(title=Text(title), title_justify="left")  # a plain Text: "R[k, j]" is not markup
    table.add_column("after task", justify="right")
    for j in range(n):
        table.add_column(f"T{j}" if not names else f"T{j} {names[j]}", justify="right")
    for k, row in enumerate(rows):
        table.add_row(str(k), *["" if v is None else f"{v:.3f}" for v in row])
    return table


def final_table(final: dict, title: str = "final metrics") -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k in ("tag", "taw", "routing", "avg_incremental_tag", "forgetting_tag", "bwt_tag"):
        if k in final:
            table.add_row(k, "n/a" if final[k] is None else f"{final[k]:.4f}")
    return table


# ----------------------------------------------------------------------------- train


def _parse_size(text: Optional[str]) -> Optional[tuple[int, int]]:
    if text is None:
        return None
    from mind_edge.errors import ConfigError

    try:
        parts = [int(v) for v in text.lower().replace("x", ",").split(",")]
    except ValueError:
        raise ConfigError(f"--image-size must look like 32 or 64,64 (H,W), got {text!r}") from None
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or min(parts) < 1:
        raise ConfigError(f"--image-size must look like 32 or 64,64 (H,W), got {text!r}")
    return parts[0], parts[1]


def _parse_ints(text: Optional[str], what: str) -> Optional[tuple[int, ...]]:
    if text is None:
        return None
    from mind_edge.errors import ConfigError

    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ConfigError(f"{what} must be a comma-separated list of integers, got {text!r}") from None


@app.command()
@handle_errors
def train(
    out: Annotated[Path, typer.Option("--out", "-o", help="Run directory to write (checkpoint, run.json, metrics).")],
    dataset: Annotated[str, typer.Option(help="digits | cifar10 | cifar100 | mnist | fashion-mnist | imagefolder")] = "digits",
    root: Annotated[Optional[str], typer.Option("--root", "--data-root", help="Dataset folder (idx files, CIFAR pickles or an ImageFolder tree).")] = None,
    download: Annotated[bool, typer.Option(help="Let torchvision download CIFAR/MNIST into --root (needs internet).")] = False,
    tasks: Annotated[int, typer.Option(help="Number of tasks the classes are split into.")] = 5,
    order: Annotated[str, typer.Option(help="Class order: seed | natural | icarl.")] = "seed",
    seed: Annotated[int, typer.Option(help="Seed of the class order, initialisation and data order.")] = 0,
    method: Annotated[str, typer.Option(help="self (self-distillation, default) | teacher (teacher distillation).")] = "self",
    preset: Annotated[str, typer.Option(help="Hyper-parameter preset: fast | cifar100 | tinyimagenet | core50 | synbols.")] = "fast",
    arch: Annotated[str, typer.Option(help="resnet32 (CIFAR-style) | resnet18 (64x64 inputs).")] = "resnet32",
    width: Annotated[float, typer.Option(help="Channel width multiplier.")] = 1.0,
    capacity: Annotated[Optional[int], typer.Option(help="Tasks the weights are split for (default: --tasks; larger leaves room for on-device tasks).")] = None,
    image_size: Annotated[Optional[str], typer.Option(help="Resize ImageFolder images to H,W.")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Training epochs per task (overrides the preset).")] = None,
    distill_epochs: Annotated[Optional[int], typer.Option(help="Distillation epochs per task.")] = None,
    lr: Annotated[Optional[float], typer.Option(help="Training learning rate (AdamW).")] = None,
    distill_lr: Annotated[Optional[float], typer.Option(help="Distillation learning rate.")] = None,
    milestones: Annotated[Optional[str], typer.Option(help="MultiStepLR milestones of training, e.g. 35 or 70,90.")] = None,
    distill_milestones: Annotated[Optional[str], typer.Option(help="MultiStepLR milestones of distillation.")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Batch size.")] = None,
    beta: Annotated[Optional[float], typer.Option(help="Weight of the symmetric KL distillation term.")] = None,
    temperature: Annotated[Optional[float], typer.Option(help="Routing temperature T.")] = None,
    routing: Annotated[Optional[str], typer.Option(help=ROUTING_HELP + " (default: combined).")] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda[:N].")] = "auto",
    resume: Annotated[bool, typer.Option(help="Continue the run in --out at its next task.")] = False,
    stop_after: Annotated[Optional[int], typer.Option(help="Learn only the first N tasks of the scenario; the rest stay for later (--resume, or 'mind-edge learn' on the device).")] = None,
) -> None:
    """Train MIND on a class-incremental scenario, one task after another."""
    # cheap checks first: nothing is imported or loaded before the arguments and --out are known good
    if not resume:
        check_new_output(out, "run directory", "or pass --resume to continue the run there")
    if stop_after is not None and not 1 <= stop_after <= tasks:
        from mind_edge.errors import ConfigError

        raise ConfigError(f"--stop-after must be between 1 and --tasks ({tasks}), got {stop_after}")
    require_modules("torch", "safetensors")
    check_dataset(dataset, root)
    from mind_edge.run import RunSpec, train_run
    from mind_edge.train import preset as make_preset

    cfg = make_preset(
        preset, method=method, epochs=epochs, distill_epochs=distill_epochs, lr=lr, distill_lr=distill_lr,
        milestones=_parse_ints(milestones, "--milestones"), distill_milestones=_parse_ints(distill_milestones, "--distill-milestones"),
        batch_size=batch_size, beta=beta, temperature=temperature, routing=routing,
    )
    spec = RunSpec(dataset=dataset, root=root, download=download, tasks=tasks, order=order, seed=seed, arch=arch,
                   width=width, capacity=capacity, image_size=_parse_size(image_size), train=cfg, device=device)
    with RichReporter(err_console) as rep:
        result = train_run(spec, out, resume=resume, reporter=rep, stop_after=stop_after)
    _show_run(result.meta)
    console.print(f"run directory: [bold]{markup(out)}[/]")


def check_new_output(out: Path, what: str, hint: str = "") -> None:
    """Refuse an ``--out`` that is a file or a non-empty folder (before any work is done)."""
    from mind_edge.errors import ConfigError

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is a file; choose another --out for the {what}")
    if out.is_dir() and any(out.iterdir()):
        raise ConfigError(f"--out {out} is not empty; choose another --out for the {what}" + (f" {hint}" if hint else ""))


def check_dataset(dataset: str, root: Optional[str]) -> None:
    """The dataset name and, for an ImageFolder tree, its folder (before anything is loaded)."""
    from mind_edge.data import canonical_name as _canonical_name
    from mind_edge.errors import ConfigError, DataError

    name = _canonical_name(dataset)
    if name == "imagefolder":
        if root is None:
            raise ConfigError("--dataset imagefolder needs --root <folder with train/<class>/ and test/<class>/>")
        if not Path(root).expanduser().is_dir():
            raise DataError(f"--root {root} does not exist or is not a folder; expected an ImageFolder tree "
                            "with train/<class>/ and test/<class>/ (or val/)")


def _show_run(meta: dict) -> None:
    steps = meta.get("steps", [])
    if not steps:
        console.print("no task learned yet")
        return
    console.print(matrix_table("TAG accuracy R[k, j] (task unknown)", steps[-1]["tag_matrix"]))
    console.print(matrix_table("TAW accuracy R[k, j] (task given)", steps[-1]["taw_matrix"]))
    console.print(final_table(meta["final"]))


@app.command("eval")
@handle_errors
def eval_cmd(
    run_dir: Annotated[Path, typer.Argument(help="A run directory written by 'mind-edge train'.")],
    temperature: Annotated[Optional[float], typer.Option(help="Routing temperature (default: the run's).")] = None,
    routing: Annotated[Optional[str], typer.Option(
        help=ROUTING_HELP + "; several comma-separated, or 'all', compare policies on the same sub-networks "
             "(default: the run's).")] = None,
    root: Annotated[Optional[str], typer.Option(help="Dataset folder, if it moved since training.")] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda[:N].")] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Re-evaluate a run on its test data (at another routing temperature, or with other routing policies)."""
    from mind_edge.run import evaluate_run, parse_policies

    names = parse_policies(routing)
    several = names is not None and len(names) > 1
    res = evaluate_run(run_dir, temperature=temperature, policy=names[0] if names else None, root=root, device=device,
                       policies=names if several else None)
    if as_json:
        console.print_json(json.dumps(res))
        return
    if several:
        table = Table(title=text(f"{run_dir} — T={res['temperature']}: routing policies on the same sub-networks"),
                      title_justify="left")
        for col in ("policy", "TAG", "TAW", "routing", "ECE"):
            table.add_column(col, justify="left" if col == "policy" else "right")
        for name, v in res["policies"].items():
            table.add_row(name, f"{v['tag_mean']:.4f}", f"{v['taw_mean']:.4f}", f"{v['routing_overall']:.4f}",
                          f"{v['ece']:.4f}")
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


@app.command()
@handle_errors
def calibrate(
    run_dir: Annotated[Path, typer.Argument(help="A run directory written by 'mind-edge train' (or 'learn').")],
    root: Annotated[Optional[str], typer.Option(help="Dataset folder, if it moved since training.")] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda[:N].")] = "cpu",
    routing: Annotated[Optional[str], typer.Option(
        help=ROUTING_HELP + ": the policy the run routes with from now on (default: combined).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Recompute the statistics of tasks that already have them.")] = False,
) -> None:
    """Gather the routing statistics of a run trained before they existed, from each task's own training data.

    Nothing is retrained; the checkpoint and run.json are rewritten atomically. Then 'mind-edge eval RUN
    --routing all' compares the policies and 'mind-edge export' builds the graph with the run's policy.
    """
    from mind_edge.calibrate import calibrate_run

    res = calibrate_run(run_dir, root=root, device=device, force=force, routing=routing)
    console.print(text(f"{run_dir}: routing statistics gathered for task(s) {res.gathered or 'none'}"
                       f"{f', kept for {res.kept}' if res.kept else ''} ({res.bytes_per_task / 1024:.1f} KiB per task, "
                       f"{res.seconds:.1f} s); the run routes with {res.policy!r}"))


@app.command()
@handle_errors
def info(
    run_dir: Annotated[Path, typer.Argument(help="A run directory written by 'mind-edge train'.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print run.json's summary as JSON.")] = False,
) -> None:
    """Show a run directory: architecture, scenario, hyper-parameters, metrics."""
    from mind_edge.checkpoint import CHECKPOINT, read_run_json
    from mind_edge.fileio import sha256_file
    from mind_edge.errors import CheckpointError

    meta = read_run_json(run_dir)
    ck = Path(run_dir) / CHECKPOINT
    if not ck.is_file():
        raise CheckpointError(f"{ck} is missing")
    ok = sha256_file(ck) == meta.get("checkpoint_sha256")
    if as_json:
        summary = {k: meta.get(k) for k in ("net", "scenario", "train", "seed", "final", "learned_tasks", "versions")}
        summary["checkpoint_ok"] = ok
        console.print_json(json.dumps(summary))
        return
    table = Table(title=text(run_dir), title_justify="left", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    net, sc, tr = meta["net"], meta["scenario"], meta["train"]
    table.add_row("architecture", text(f"{net['arch']} width {net['width']} input {net['in_channels']}x{net['input_size'][0]}x{net['input_size'][1]} capacity {net['capacity']}"))
    table.add_row("scenario", text(f"{sc['dataset']}: {len(meta['learned_tasks'])} of {len(sc['tasks'])} tasks learned, order {sc['order']} (seed {sc['seed']})"))
    table.add_row("method", text(f"{tr['method']}-distillation, {tr['epochs']}+{tr['distill_epochs']} epochs, T={tr['temperature']}, routing {tr['routing']}"))
    table.add_row("checkpoint", f"{ck.stat().st_size / 1e6:.2f} MB, sha256 {'verified' if ok else '[red]MISMATCH[/]'}")
    names = sc["class_names"]
    for t, classes in enumerate(sc["tasks"]):
        mark = "" if t < len(meta["learned_tasks"]) else " (not learned yet)"
        table.add_row(f"task {t}", text(", ".join(str(names[c]) for c in classes) + mark))
    console.print(table)
    _show_run(meta)


# ----------------------------------------------------------------------------- demo


#: What 'mind-edge demo' writes into --out (and all that --overwrite may replace there).
DEMO_OUTPUTS = ("demo.json", "run", "bundle", "images", "bench.json")


def check_owned_out(out: Path, overwrite: bool, *, marker: str, what: str) -> bool:
    """Refuse a file or a non-empty ``out``, unless ``overwrite`` and ``what`` wrote it before.

    ``marker`` (a file ``what`` writes first into its folder) marks the folder as its own; a folder
    without it is never touched. Returns whether a previous run's outputs are to be replaced.
    """
    from mind_edge.errors import ConfigError

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is a file; choose another --out for {what}")
    if not out.is_dir() or not any(out.iterdir()):
        return False
    if not overwrite:
        raise ConfigError(f"--out {out} is not empty; choose another --out for {what}, or pass --overwrite to "
                          f"replace the outputs of an earlier {what} there (nothing else is removed)")
    if not (out / marker).is_file():
        raise ConfigError(f"--out {out} is not empty and was not written by {what} (no {marker}); "
                          f"--overwrite only replaces the outputs of an earlier {what}: choose another --out")
    return True


def clear_owned_out(out: Path, names: tuple[str, ...]) -> None:
    """Remove the entries ``names`` (what a command writes) from ``out``, nothing else."""
    import shutil

    for name in names:
        p = Path(out) / name
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        elif p.exists() or p.is_symlink():
            p.unlink()


@app.command()
@handle_errors
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the demo's run, bundle and images (must be new or empty).")] = Path("runs/demo"),
    overwrite: Annotated[bool, typer.Option(help="Replace the outputs of an earlier demo in --out (only those: files the demo did not write stay).")] = False,
    epochs: Annotated[Optional[int], typer.Option(help="Training epochs per task (default: the fast preset).")] = None,
    distill_epochs: Annotated[Optional[int], typer.Option(help="Distillation epochs per task.")] = None,
    width: Annotated[float, typer.Option(help="Channel width multiplier of the ResNet-32.")] = 1.0,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda[:N].")] = "cpu",
    images_per_class: Annotated[int, typer.Option(help="Test images written as PNG files and predicted.")] = 2,
    bench_seconds: Annotated[float, typer.Option(help="Timed seconds per backend and batch in the benchmark step (0 skips it).")] = 1.0,
) -> None:
    """Offline end to end on scikit-learn's digits: train → export → validate → predict → benchmark."""
    import time

    from mind_edge.errors import ConfigError

    if images_per_class < 1:
        raise ConfigError(f"--images-per-class must be >= 1, got {images_per_class}")
    if not width > 0:
        raise ConfigError(f"--width must be > 0, got {width}")
    replace_previous = check_owned_out(out, overwrite, marker="demo.json", what="'mind-edge demo'")  # nothing imported yet
    require_modules("torch", "safetensors", "sklearn", "onnx", "onnxruntime")

    import numpy as np

    from mind_edge.data import load_dataset
    from mind_edge.export.exporter import export_bundle
    from mind_edge.run import RunSpec, train_run
    from mind_edge.runtime.predict import Runtime
    from mind_edge.train import preset as make_preset

    if replace_previous:
        clear_owned_out(out, DEMO_OUTPUTS)
    out.mkdir(parents=True, exist_ok=True)
    (out / "demo.json").write_text(json.dumps({"created_by": "mind-edge demo", "outputs": list(DEMO_OUTPUTS)}) + "\n")
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    cfg = make_preset("fast", epochs=epochs, distill_epochs=distill_epochs)
    spec = RunSpec(dataset="digits", tasks=5, seed=seed, width=width, train=cfg, device=device)
    console.rule("[bold]1/4 train MIND (self-distillation) on digits, 5 tasks × 2 classes")
    with RichReporter(err_console) as rep:
        result = train_run(spec, out / "run", reporter=rep)
    times["train"] = time.perf_counter() - t0
    _show_run(result.meta)
    from mind_edge.run import evaluate_run

    policy = result.meta["train"]["routing"]
    # the same sub-networks routed by MIND's max-probability rule, for comparison (inference only)
    paper = evaluate_run(out / "run", device=device, policies=[policy, "maxprob"])["policies"]["maxprob"]

    console.rule("[bold]2/4 export one shared-weight ONNX graph and validate it against PyTorch")
    t1 = time.perf_counter()
    exp = export_bundle(out / "run", out / "bundle", layout="shared")
    times["export + validate"] = time.perf_counter() - t1
    v = exp.summary()["validation"]
    console.print(f"bundle {exp.bundle}: model.onnx {exp.model_bytes / 1e3:.1f} kB "
                  f"({exp.ratio_to_dense:.2f}× one dense fp32 model; {exp.num_tasks} separate sub-networks would be "
                  f"{exp.naive_bytes / 1e3:.1f} kB); validation {'passed' if exp.passed else 'FAILED'}")

    console.rule("[bold]3/4 predict test images from PNG files, task unknown, without PyTorch in the loop")
    from PIL import Image

    _, test_set, _ = load_dataset("digits", seed=seed)
    img_dir = out / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    paths, truth = [], []
    for c in range(len(test_set.class_names)):
        for k, i in enumerate(np.flatnonzero(test_set.labels == c)[:images_per_class]):
            p = img_dir / f"digit{c}_{k}.png"
            Image.fromarray(test_set.images[i][..., 0], mode="L").save(p)
            paths.append(str(p))
            truth.append(c)
    t2 = time.perf_counter()
    with Runtime(exp.bundle) as rt:
        pred = rt.predict(paths)
        providers = rt.providers_used
    times["predict"] = time.perf_counter() - t2
    table = Table(title=f"predictions ({', '.join(providers)})", title_justify="left")
    for col in ("file", "true", "predicted", "task", "confidence"):
        table.add_column(col, justify="right" if col != "file" else "left")
    for rec, y in zip(pred.records(), truth):
        ok = rec["label"] == y
        table.add_row(Path(rec["file"]).name, str(y), f"[{'green' if ok else 'red'}]{rec['class_name']}[/]",
                      str(rec["task"]), f"{rec['confidence']:.3f}")
    console.print(table)
    correct = int(sum(int(a) == b for a, b in zip(pred.label, truth)))

    bench_rows: list[dict] = []
    if bench_seconds > 0:
        import tempfile

        from mind_edge.runtime.bench import BenchSpec, TimingConfig, bundle_sources, run_benchmark, write_json
        from mind_edge.runtime.bench_cli import render

        console.rule("[bold]4/4 benchmark the bundle: ONNX Runtime vs the eager PyTorch per-task loop")
        t3 = time.perf_counter()
        spec_b = BenchSpec(backends=("ort", "torch"), batches=(1, 8), isolate=False,
                           timing=TimingConfig(warmup_seconds=0.2, min_iters=10, min_seconds=bench_seconds))
        with tempfile.TemporaryDirectory(prefix="mind-edge-demo-bench-") as tmp:
            sources, info = bundle_sources(Path(tmp), exp.bundle, backends=spec_b.backends)
            report = run_benchmark(spec_b, sources, workdir=Path(tmp), model_info=info)
        render(report, console)
        write_json(report, out / "bench.json")
        bench_rows = report["results"]
        times["benchmark"] = time.perf_counter() - t3

    summary = Table(title="mind-edge demo summary", title_justify="left", show_header=False)
    summary.add_column("what", style="bold")
    summary.add_column("value")
    f = result.final
    summary.add_row("accuracy (digits/5)", f"TAG {f['tag']:.3f} · TAW {f['taw']:.3f} · routing {f['routing']:.3f} · "
                    f"forgetting {f['forgetting_tag']:.3f} (routing policy {policy})")
    summary.add_row("same sub-networks, maxprob routing", f"TAG {paper['tag_mean']:.3f} · routing "
                    f"{paper['routing_overall']:.3f} (MIND's max-probability rule)")
    summary.add_row("bundle", f"{exp.bundle} · {exp.model_bytes / 1e3:.1f} kB · {exp.layout} layout · opset {exp.opset}")
    summary.add_row("ONNX vs PyTorch", f"max |Δ task_logits| {v['max_abs_diff'].get('task_logits', float('nan')):.2e} · "
                    f"label/task agreement {v['agreement']}")
    summary.add_row("predict (PNG files)", f"{correct}/{len(truth)} correct")
    for row in bench_rows:
        if row.get("p50_ms") is not None:
            summary.add_row(f"latency {row['backend']} batch {row['batch']}",
                            f"p50 {row['p50_ms']:.2f} ms · {row['throughput_ips']:.0f} images/s")
    summary.add_row("time", " · ".join(f"{k} {s:.1f} s" for k, s in times.items()) +
                    f" · total {time.perf_counter() - t0:.1f} s")
    console.print(summary)


def _mount_subapps() -> None:
    # every room registers its own commands; none of these imports pulls in torch
    from mind_edge.devices.cli import app as devices_app
    from mind_edge.devices.deploy_cli import register as register_deploy
    from mind_edge.export.cli import register as register_export
    from mind_edge.export.engine_cli import register as register_engine
    from mind_edge.runtime.bench_cli import register as register_bench
    from mind_edge.runtime.cli import register as register_runtime
    from mind_edge.runtime.patch_cli import register as register_patch

    register_export(app)
    register_runtime(app)
    register_bench(app)
    register_engine(app)
    register_deploy(app)
    register_patch(app)
    app.add_typer(devices_app, name="devices", help="Device profiles, detection and telemetry.")


_mount_subapps()


def main() -> None:
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
