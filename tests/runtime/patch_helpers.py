"""Helpers of the patch tests (torch-free): MIND-structured random networks, bundles and patches.

``world(folder)`` builds a 5-task network (capacity 6), a shared-layout bundle of its first 3
tasks (the deployed base), the patches of tasks 3 and 4 (task 3 has more classes than any
earlier task, so the padded logits grow) and reference bundles assembled directly from the
4- and 5-task networks (what a fresh export of the run that learned them gives).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from mind_edge.runtime.bundle import assemble_bundle
from mind_edge.runtime.graph import random_arrays
from mind_edge.runtime.patch import build_patch

NET = {"arch": "resnet32", "in_channels": 1, "input_size": [8, 8], "width": 0.25, "capacity": 6}
CLASSES = [[4, 1], [0, 9], [3, 5], [2, 6, 7], [8, 10]]
NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]
T = 1.5


@dataclass
class World:
    full: object  # NetArrays, 5 tasks
    base: Path  # bundle of tasks 0..2
    ref4: Path  # bundle of tasks 0..3 assembled from the arrays
    ref5: Path
    p3: Path  # patch: task 3
    p4: Path  # patch: task 4
    p3_signed: Path
    key: Path
    pub: Path
    other_pub: Path


def make_bundle(out: Path, arrays) -> Path:
    return assemble_bundle(
        out,
        arrays,
        layout="shared",
        temperature=T,
        class_names=NAMES,
        mean=[0.5],
        std=[0.25],
        source={"note": "patch test network"},
    )


def world(folder: Path, seed: int = 0) -> World:
    from mind_edge.runtime.signing import generate_keypair

    folder.mkdir(parents=True, exist_ok=True)
    full = random_arrays(NET, CLASSES, seed=seed, owners="mind")
    a3, a4 = full.first_tasks(3), full.first_tasks(4)
    base = make_bundle(folder / "base", a3)
    ref4 = make_bundle(folder / "ref4", a4)
    ref5 = make_bundle(folder / "ref5", full)
    keys = generate_keypair(folder / "keys" / "k")
    other = generate_keypair(folder / "keys" / "other")
    names3 = [NAMES[c] for c in CLASSES[3]]
    p3 = folder / "t3.mepatch"
    p3.write_bytes(build_patch(a3, a4, 3, names3))
    p3s = folder / "t3.signed.mepatch"
    p3s.write_bytes(build_patch(a3, a4, 3, names3, sign_key=keys.secret_path))
    p4 = folder / "t4.mepatch"
    p4.write_bytes(build_patch(a4, full, 4, [NAMES[c] for c in CLASSES[4]]))
    return World(full, base, ref4, ref5, p3, p4, p3s, keys.secret_path, keys.public_path, other.public_path)


def tree_hash(root: Path) -> dict[str, str]:
    """Every path under ``root`` (files: sha256 of the content; folders: 'dir'), with permissions."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for d in dirnames:
            p = Path(dirpath) / d
            out[str(p.relative_to(root))] = f"dir {oct(p.stat().st_mode)}"
        for f in sorted(filenames):
            p = Path(dirpath) / f
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest() + f" {oct(p.stat().st_mode)}"
    return out
