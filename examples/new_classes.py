"""Write the classes a run planned but has not learned yet as an ImageFolder tree of PNG files.

A run trained with ``mind-edge train --stop-after K`` leaves the later tasks of its scenario for
later; this script writes the images of the next one (task K) from the run's own dataset as
``OUT/train/<class>/*.png`` and ``OUT/test/<class>/*.png`` — the folder ``mind-edge learn --data``
takes, as a device would collect it::

    mind-edge train --dataset digits --tasks 5 --capacity 8 --stop-after 4 --out runs/digits-cap8
    python examples/new_classes.py runs/digits-cap8 --out runs/new_classes
    mind-edge learn runs/digits-cap8 --data runs/new_classes --out runs/digits-cap8-t4

The class folders are named like the run's classes, so ``learn`` keeps their planned class ids.
--out must be a new or empty folder.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> Path:
    from mind_edge.console import read_defaults
    from mind_edge.outputs import check_new_output

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", type=Path, help="a run directory written by 'mind-edge train --stop-after K'")
    ap.add_argument("--out", type=Path, required=True, help="folder to write (train/<class>/, test/<class>/)")
    ap.add_argument("--root", default=None, help="the dataset folder, if it moved since training")
    ap.set_defaults(**read_defaults("new_classes"))
    args = ap.parse_args(argv)
    check_new_output(args.out, "new classes")

    from PIL import Image

    from mind_edge.checkpoint import read_run_json
    from mind_edge.data import load_dataset, task_arrays
    from mind_edge.errors import ConfigError

    record = read_run_json(args.run)
    scenario = record.scenario
    task = record.num_learned
    if task >= scenario.num_tasks():
        raise ConfigError(
            f"run {args.run} has learned all {scenario.num_tasks()} tasks of its scenario; train one with "
            "--stop-after to leave classes for later"
        )
    data = record.data
    if data is None:
        raise ConfigError(f'run {args.run} records no dataset ("data" in run.json)')
    root = args.root if args.root is not None else data.root
    train, test, _ = load_dataset(scenario.dataset, root, image_size=data.input_size, seed=record.seed)
    names = scenario.class_names
    count = 0
    for split, arrays in (("train", train), ("test", test)):
        images, _, labels = task_arrays(arrays, scenario, task)
        for i, (img, c) in enumerate(zip(images, labels)):
            d = args.out / split / names[int(c)]
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img).save(d / f"{i:05d}.png")
            count += 1
    print(
        f"task {task} of {args.run}: classes {', '.join(names[c] for c in scenario.tasks[task])}, "
        f"{count} PNG files in {args.out}/train and {args.out}/test"
    )
    return args.out


if __name__ == "__main__":
    from mind_edge.errors import MindEdgeError

    try:
        main()
    except MindEdgeError as exc:  # one line and exit 2, as the CLI does
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
