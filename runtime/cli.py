"""``mind-edge predict``: classify image files with a bundle (torch-free)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, List, Optional

import typer


def register(app: typer.Typer) -> None:
    """Add the top-level ``predict`` command to ``app``."""
    from mind_edge.cli import console, handle_errors

    @app.command("predict")
    @handle_errors
    def predict_cmd(
        bundle: Annotated[Path, typer.Argument(help="A bundle folder written by 'mind-edge export'.")],
        images: Annotated[List[Path], typer.Argument(help="Image files (resized bilinearly and normalised like training).")],
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
        temperature: Annotated[Optional[float], typer.Option(help="Re-route at this temperature (default: the bundle's).")] = None,
        backend: Annotated[str, typer.Option(help="Inference backend: ort (ONNX Runtime: CPU, CUDA or TensorRT providers) or trt (the TensorRT engine built here with 'mind-edge engine build').")] = "ort",
        providers: Annotated[Optional[str], typer.Option(help="Comma-separated ONNX Runtime providers, e.g. cuda,cpu or tensorrt (default: CUDA if available, else CPU).")] = None,
        threads: Annotated[Optional[int], typer.Option(help="Intra-op threads (default: ONNX Runtime's).")] = None,
        resize: Annotated[bool, typer.Option(help="Resize (bilinear) and convert images whose size or channel count differ from the bundle's, as ImageFolder training does; by default they are rejected.")] = False,
        batch_size: Annotated[int, typer.Option(help="Images per inference call.")] = 64,
    ) -> None:
        """Predict the class (and the task) of images with a bundle, task unknown."""
        from rich.table import Table

        from mind_edge.runtime.bundle import Bundle
        from mind_edge.runtime.predict import Runtime

        b = Bundle.load(bundle)
        prov = [p for p in providers.split(",") if p.strip()] if providers else None
        with Runtime(b, backend=backend, providers=prov, threads=threads) as rt:
            pred = rt.predict([str(p) for p in images], temperature=temperature, batch_size=batch_size, strict=not resize)
            used = rt.providers_used
        if as_json:
            typer.echo(json.dumps({"bundle": str(bundle), "backend": backend, "providers": used,
                                   "temperature": pred.temperature, "predictions": pred.records()}))
            return
        table = Table(title=f"{bundle} — T={pred.temperature:g}, {backend} on {', '.join(used)}", title_justify="left")
        for col, just in (("file", "left"), ("class", "left"), ("label", "right"), ("task", "right"), ("confidence", "right")):
            table.add_column(col, justify=just)
        for r in pred.records():
            table.add_row(r["file"], r["class_name"], str(r["label"]), str(r["task"]), f"{r['confidence']:.4f}")
        console.print(table)
