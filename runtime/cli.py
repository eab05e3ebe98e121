"""``mind-edge predict``: classify image files with a bundle (torch-free)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, List, Optional

import typer

from mind_edge.console import console, handle_errors
from mind_edge.runtime.routing import POLICIES


def check_providers(requested: List[str]) -> None:
    """Providers named in ``--providers`` must exist here, unless the list includes ``cpu`` (fallback allowed)."""
    from mind_edge.errors import ConfigError
    from mind_edge.runtime.runners import PROVIDER_ALIASES, available_providers

    available = available_providers()
    missing = [p for p in requested
               if PROVIDER_ALIASES.get(p.lower(), p) not in available and PROVIDER_ALIASES.get(p.lower(), p).endswith("ExecutionProvider")]
    if not missing:
        return
    short = {v: k for k, v in PROVIDER_ALIASES.items() if k != "trt"}
    have = ", ".join(short.get(a, a) for a in available)
    if "CPUExecutionProvider" not in [PROVIDER_ALIASES.get(p.lower(), p) for p in requested]:
        raise ConfigError(
            f"--providers {','.join(requested)}: {', '.join(missing)} is not available in this ONNX Runtime (it has: {have}); "
            "install an ONNX Runtime build with it (Jetson: NVIDIA's onnxruntime-gpu wheel for JetPack), or add cpu "
            f"to the list (--providers {','.join(requested)},cpu) to fall back to the CPU"
        )
    # with cpu in the list the fallback is allowed: the runner logs a warning naming what is skipped



def register(app: typer.Typer) -> None:
    """Add the top-level ``predict`` command to ``app``."""
    @app.command("predict")
    @handle_errors
    def predict_cmd(
        bundle: Annotated[Path, typer.Argument(help="A bundle folder written by 'mind-edge export'.")],
        images: Annotated[List[Path], typer.Argument(help="Image files, folders (every image below them) or quoted glob patterns such as 'shots/*.jpg'.")],
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
        temperature: Annotated[Optional[float], typer.Option(help="Re-route at this temperature (default: the bundle's).")] = None,
        backend: Annotated[str, typer.Option(help="Inference backend: ort (ONNX Runtime: CPU, CUDA or TensorRT providers) or trt (the TensorRT engine built here with 'mind-edge engine build').")] = "ort",
        providers: Annotated[Optional[str], typer.Option(help="Comma-separated ONNX Runtime providers, e.g. tensorrt or cuda,cpu (default: CUDA if available, else CPU). A named provider this ONNX Runtime lacks is an error, unless the list ends in cpu (then it falls back to the CPU and says so).")] = None,
        threads: Annotated[Optional[int], typer.Option(help="Intra-op threads (default: ONNX Runtime's).")] = None,
        resize: Annotated[bool, typer.Option(help="Resize (bilinear) and convert images whose size or channel count differ from the bundle's, as ImageFolder training does; by default they are rejected.")] = False,
        batch_size: Annotated[int, typer.Option(help="Images per inference call.")] = 64,
        routing: Annotated[Optional[str], typer.Option(help="Re-route in numpy with another routing policy ("
                                                      + " | ".join(POLICIES) + "; default: the bundle's).")] = None,
    ) -> None:
        """Predict the class (and the task) of images with a bundle, task unknown."""
        from rich.table import Table

        from mind_edge.runtime.bundle import Bundle
        from mind_edge.runtime.predict import Runtime

        b = Bundle.load(bundle)
        prov = [p.strip() for p in providers.split(",") if p.strip()] if providers else None
        if prov and backend == "ort":
            check_providers(prov)
        with Runtime(b, backend=backend, providers=prov, threads=threads) as rt:
            pred = rt.predict([str(p) for p in images], temperature=temperature, batch_size=batch_size, strict=not resize,
                              routing=routing)
            used = rt.providers_used
        if as_json:
            typer.echo(json.dumps({"bundle": str(bundle), "backend": backend, "providers": used,
                                   "temperature": pred.temperature, "routing": pred.policy,
                                   "predictions": pred.records()}))
            return
        from mind_edge.textsafe import text  # file and class names are data: never markup, no control characters

        table = Table(title=text(f"{bundle} — T={pred.temperature:g}, routing {pred.policy}, {backend} on {', '.join(used)}"),
                      title_justify="left")
        for col, just in (("file", "left"), ("class", "left"), ("label", "right"), ("task", "right"), ("confidence", "right")):
            table.add_column(col, justify=just)
        for r in pred.records():
            table.add_row(text(r["file"]), text(r["class_name"]), str(r["label"]), str(r["task"]), f"{r['confidence']:.4f}")
        console.print(table)
