"""Options and arguments that several ``mind-edge`` commands share, declared once.

Each alias is an ``Annotated`` type a command uses as its parameter's annotation; the default
stays in the command (``device: DeviceOpt = "auto"``). Options whose help says something specific
to one command are declared in that command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from mind_edge.core.routing import POLICIES

#: The routing policies, for the help of every ``--routing``.
ROUTING_HELP = "Routing policy: " + " | ".join(POLICIES)

# --json: print JSON on stdout instead of tables
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
JsonResultOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
JsonPlainOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]

# the torch side
DeviceOpt = Annotated[str, typer.Option(help="auto | cpu | cuda[:N].")]
DataRootOpt = Annotated[Optional[str], typer.Option(help="Dataset folder, if it moved since training.")]
DistillEpochsOpt = Annotated[Optional[int], typer.Option(help="Distillation epochs per task.")]

# run directories and bundles
RunDirArg = Annotated[Path, typer.Argument(help="A run directory written by 'mind-edge train'.")]
BundleArg = Annotated[Path, typer.Argument(help="A bundle folder written by 'mind-edge export'.")]
