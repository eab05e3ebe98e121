"""What ``mind-edge demo`` runs and writes, torch-free: the CLI checks it before anything heavy loads.

:mod:`mind_edge.demo` runs the pipeline; this module only holds its configuration and the cheap
checks, so a wrong ``--out`` is refused in milliseconds, and with one line on a machine without
PyTorch too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mind_edge.errors import ConfigError
from mind_edge.outputs import check_owned_out

#: What the demo writes into its folder (and all that ``overwrite`` may replace there).
DEMO_OUTPUTS = ("demo.json", "run", "bundle", "images", "bench.json")
#: The file that marks a folder as the demo's own (written first).
DEMO_MARKER = "demo.json"


@dataclass(frozen=True)
class DemoConfig:
    """What to run: the folder, the training budget and the size of the predict and benchmark steps."""

    out: Path = Path("runs/demo")
    overwrite: bool = False  # replace the outputs of an earlier demo in ``out`` (only those)
    epochs: int | None = None  # training epochs per task (None: the fast preset's)
    distill_epochs: int | None = None
    width: float = 1.0  # channel width multiplier of the ResNet-32
    seed: int = 0
    device: str = "cpu"
    images_per_class: int = 2  # test images written as PNG files and predicted
    bench_seconds: float = 1.0  # timed seconds per backend and batch (0 skips the benchmark)

    def check(self) -> bool:
        """The cheap checks (before anything is loaded); returns whether an earlier demo's outputs go."""
        if self.images_per_class < 1:
            raise ConfigError(f"--images-per-class must be >= 1, got {self.images_per_class}")
        if not self.width > 0:
            raise ConfigError(f"--width must be > 0, got {self.width}")
        return check_owned_out(self.out, self.overwrite, marker=DEMO_MARKER, what="'mind-edge demo'")


__all__ = ["DEMO_MARKER", "DEMO_OUTPUTS", "DemoConfig"]
