"""The on-device update loop, end to end, offline (scikit-learn's digits).

1. train 4 tasks on the host (digits in a 5-task scenario, capacity 10: room for 6 more tasks)
2. export the bundle and deploy it (a copy in OUT/device/bundle, as rsync would leave it)
3. learn task 5 from a folder of PNG files of new classes (``mind-edge learn``)
4. make a signing key and a signed task patch (``mind-edge keygen``, ``mind-edge patch create``)
5. apply the patch to the deployed bundle, torch-free, verifying the signature (``mind-edge patch apply``)
6. predict the new classes' images with the patched bundle, and compare it with a bundle
   freshly exported from the run that learned task 5 (labels and tasks must agree 100 %)

    python examples/on_device_update.py --out runs/update           # full (fast preset; see the README for times)
    python examples/on_device_update.py --out /tmp/u --quick        # narrow net, 1 epoch per stage

--out must be a new or empty folder; --overwrite replaces only what an earlier run of this example
wrote there (it keeps example.json as its mark). Defaults of the options can come from the
``on_device_update`` section of the JSON file named by $MIND_EDGE_DEFAULTS (as the CLI's do).
Training progress goes to stderr: a bar on a terminal, plain lines at least every 5 s otherwise.

The equivalent commands::

    mind-edge train --dataset digits --tasks 5 --capacity 10 --out run4   # (the example stops after 4 tasks)
    mind-edge export run4 --out bundle && rsync -a bundle/ device:bundle/
    mind-edge learn run4 --data new_classes/ --out run5 [--memory-budget 900]
    mind-edge keygen key && mind-edge patch create run5 --out task4.mepatch --sign-key key
    mind-edge patch apply device/bundle task4.mepatch --verify-key key.pub     # on the device
    mind-edge predict device/bundle new_classes/test/*/*.png
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

#: What this example writes into --out (all that --overwrite may replace there).
OUTPUTS = (
    "example.json",
    "run4",
    "host_bundle",
    "device",
    "new_classes",
    "run5",
    "keys",
    "task4.mepatch",
    "fresh_bundle",
    "summary.json",
)


def main(argv: list[str] | None = None) -> dict:
    from mind_edge.console import read_defaults

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("runs/on_device_update"))
    ap.add_argument(
        "--overwrite", action="store_true", help="replace what an earlier run of this example wrote in --out"
    )
    ap.add_argument("--quick", action="store_true", help="width 0.25, 1+1 epochs (a test, not a demo of accuracy)")
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--distill-epochs", type=int, default=None)
    ap.add_argument("--width", type=float, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--memory-budget", type=float, default=None, help="MB, for the learn step")
    ap.set_defaults(**read_defaults("on_device_update"))
    args = ap.parse_args(argv)
    from mind_edge.outputs import check_owned_out

    # before anything is imported or trained: never remove a folder this example did not write
    args.replace_previous = check_owned_out(
        args.out, args.overwrite, marker="example.json", what="examples/on_device_update.py"
    )
    import torch

    threads = torch.get_num_threads()
    if args.quick:  # a tiny network: one thread is fastest (and immune to other jobs on a shared CPU)
        torch.set_num_threads(1)
    try:
        return _run(args)
    finally:
        torch.set_num_threads(threads)


def _run(args) -> dict:

    from PIL import Image

    from mind_edge.checkpoint import read_run_json
    from mind_edge.console import RichReporter, err_console
    from mind_edge.data import load_dataset
    from mind_edge.export.exporter import export_bundle
    from mind_edge.export.patch import create_patch
    from mind_edge.learn import learn
    from mind_edge.outputs import clear_owned_out
    from mind_edge.run import RunSpec, train_run
    from mind_edge.runtime.bundle import Bundle
    from mind_edge.runtime.patch import apply_patch
    from mind_edge.runtime.predict import Runtime
    from mind_edge.runtime.signing import generate_keypair
    from mind_edge.train import preset

    out: Path = args.out
    if args.replace_previous:
        clear_owned_out(out, OUTPUTS)
    out.mkdir(parents=True, exist_ok=True)
    (out / "example.json").write_text(
        json.dumps({"created_by": "examples/on_device_update.py", "outputs": list(OUTPUTS)}) + "\n"
    )
    quick = args.quick
    epochs = args.epochs or (1 if quick else None)
    distill = args.distill_epochs or (1 if quick else None)
    width = args.width or (0.25 if quick else 1.0)
    cfg = preset("fast", epochs=epochs, distill_epochs=distill, **({"lr": 0.005, "distill_lr": 0.01} if quick else {}))
    times: dict[str, float] = {}

    def step(name: str):
        print(f"\n== {name}", flush=True)
        return time.perf_counter()

    t = step("1. train 4 of 5 digits tasks on the host (capacity 10)")
    spec = RunSpec(dataset="digits", tasks=5, seed=args.seed, width=width, capacity=10, train=cfg, device="cpu")
    with RichReporter(err_console) as rep:
        run4 = train_run(spec, out / "run4", stop_after=4, reporter=rep)
    times["train 4 tasks"] = time.perf_counter() - t
    print(f"TAG after 4 tasks {run4.final['tag']:.3f}, TAW {run4.final['taw']:.3f}")

    t = step("2. export and deploy")
    exp = export_bundle(out / "run4", out / "host_bundle")
    device_bundle = out / "device" / "bundle"
    shutil.copytree(exp.bundle, device_bundle)
    times["export"] = time.perf_counter() - t
    print(f"deployed {device_bundle}: {exp.num_tasks} tasks, model.onnx {exp.model_bytes:,} bytes")

    t = step("3. learn task 5 from a folder of new classes")
    scenario = read_run_json(out / "run4").scenario
    new = scenario.tasks[4]
    train, test, _ = load_dataset("digits", seed=args.seed)
    folder = out / "new_classes"
    for split, arrays in (("train", train), ("test", test)):
        for c in new:
            d = folder / split / scenario.class_names[c]
            d.mkdir(parents=True)
            for i in np.flatnonzero(arrays.labels == c):
                Image.fromarray(arrays.images[i][..., 0], mode="L").save(d / f"{i:04d}.png")
    with RichReporter(err_console) as rep:
        res = learn(out / "run4", folder, out / "run5", device="cpu", memory_budget_mb=args.memory_budget, reporter=rep)
    times["learn"] = time.perf_counter() - t
    print(
        f"task {res.task} = classes {res.class_names} (ids {res.classes}); "
        f"new task TAW {res.new_task.get('taw', float('nan')):.3f}, "
        f"TAG over all tasks {res.final.get('tag') or float('nan'):.3f}; batch {res.batch_size}; "
        f"peak RSS {res.peak_rss_mb:.0f} MB"
    )

    t = step("4. sign a task patch")
    keys = generate_keypair(out / "keys" / "update-key")
    patch = create_patch(out / "run5", out / "task4.mepatch", sign_key=keys.secret_path, base=device_bundle)
    times["patch create"] = time.perf_counter() - t
    bundle_bytes = sum(f.stat().st_size for f in exp.bundle.iterdir())
    print(
        f"{patch.path.name}: {patch.patch_bytes:,} bytes = {100 * patch.ratio:.1f} % of the patched model.onnx, "
        f"{100 * patch.patch_bytes / bundle_bytes:.1f} % of the deployed bundle ({bundle_bytes:,} bytes); "
        f"signed by {keys.key_id}"
    )

    t = step("5. apply it on the device (torch-free, atomic)")
    applied = apply_patch(device_bundle, patch.path, verify_key=keys.public_path)
    times["patch apply"] = time.perf_counter() - t
    print(
        f"{device_bundle} -> version {applied.version} (previous {applied.previous} kept); earlier tasks' logits "
        f"moved {applied.max_abs_diff:.1e} on the probe batch"
    )

    t = step("6. predict the new classes with the patched bundle")
    fresh = export_bundle(out / "run5", out / "fresh_bundle")
    files = sorted(str(p) for p in (folder / "test").glob("*/*.png"))
    truth = np.array([scenario.class_names.index(Path(f).parent.name) for f in files])
    with Runtime(Bundle.load(device_bundle)) as rt:
        pred = rt.predict(files)
    with Runtime(fresh.bundle) as rt:
        ref = rt.predict(files)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((256, 1, 8, 8)).astype(np.float32)
    with Runtime(Bundle.load(device_bundle)) as rt:
        px = rt.predict(x)
    with Runtime(fresh.bundle) as rt:
        rx = rt.predict(x)
    times["predict"] = time.perf_counter() - t
    summary = {
        "new_classes": res.class_names,
        "new_class_accuracy": float((pred.label == truth).mean()),
        "routed_to_new_task": float((pred.task == res.task).mean()),
        # where the new classes' images go: the share of each task (the new task should lead)
        "routed_share": [float(v) for v in np.bincount(pred.task, minlength=res.task + 1) / max(len(pred.task), 1)],
        "agreement_with_fresh_export": {
            "label": float(np.mean(np.concatenate([pred.label == ref.label, px.label == rx.label]))),
            "task": float(np.mean(np.concatenate([pred.task == ref.task, px.task == rx.task]))),
            "max_abs_task_logits": float(
                max(np.abs(pred.task_logits - ref.task_logits).max(), np.abs(px.task_logits - rx.task_logits).max())
            ),
        },
        "patch_bytes": patch.patch_bytes,
        "model_bytes": patch.model_bytes,
        "bundle_bytes": bundle_bytes,
        "patch_ratio_to_model": round(patch.ratio, 4),
        "learn_peak_rss_mb": round(res.peak_rss_mb, 1),
        "version": applied.version,
        "seconds": {k: round(v, 2) for k, v in times.items()},
    }
    print(
        f"{len(files)} test images of the new classes: {100 * summary['new_class_accuracy']:.1f} % correct, "
        f"{100 * summary['routed_to_new_task']:.1f} % routed to task {res.task}"
    )
    a = summary["agreement_with_fresh_export"]
    print(
        f"patched vs freshly exported bundle: labels {100 * a['label']:.1f} %, tasks {100 * a['task']:.1f} %, "
        f"max |Δ task_logits| {a['max_abs_task_logits']:.1e}"
    )
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


if __name__ == "__main__":
    from mind_edge.errors import MindEdgeError

    try:
        s = main()
    except MindEdgeError as exc:  # one line and exit 2, as the CLI does
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    agree = s["agreement_with_fresh_export"]
    sys.exit(0 if agree["label"] == 1.0 and agree["task"] == 1.0 else 1)
