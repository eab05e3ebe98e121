"""CLI of on-device updates: ``learn``, ``patch create|inspect|apply|rollback`` and ``keygen``.

Importing this module imports neither torch nor onnx: ``learn`` and ``patch create`` import
PyTorch inside the command; ``patch apply``, ``patch rollback``, ``patch inspect`` and
``keygen`` run on a device without it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from mind_edge.textsafe import markup as m
from mind_edge.textsafe import text


def _mb(n: float) -> str:
    return f"{n / 1e6:.3f} MB"


def register(app: typer.Typer) -> None:
    """Add ``learn``, ``keygen`` and the ``patch`` sub-app to ``app``."""
    from mind_edge.console import console, handle_errors

    patch_app = typer.Typer(help="Task patches: create, inspect, apply (atomically, torch-free) and roll back.",
                            no_args_is_help=True)

    # ------------------------------------------------------------------------- learn
    @app.command("learn")
    @handle_errors
    def learn_cmd(
        run_dir: Annotated[Path, typer.Argument(help="A run directory written by 'mind-edge train' (or an earlier learn).")],
        data: Annotated[Path, typer.Option("--data", "-d", help="ImageFolder of the new classes: train/<class>/* and test/<class>/* (or val/); without a test split, --holdout of each class is held out.")],
        out: Annotated[Path, typer.Option("--out", "-o", help="New run directory to write (never the input run: learn does not rewrite a run in place).")],
        epochs: Annotated[Optional[int], typer.Option(help="Training epochs (default: the run's).")] = None,
        distill_epochs: Annotated[Optional[int], typer.Option(help="Distillation epochs (default: the run's).")] = None,
        lr: Annotated[Optional[float], typer.Option(help="Training learning rate (default: the run's).")] = None,
        distill_lr: Annotated[Optional[float], typer.Option(help="Distillation learning rate (default: the run's).")] = None,
        batch_size: Annotated[Optional[int], typer.Option(help="Batch size (default: the run's; with --memory-budget the largest that fits, at most this).")] = None,
        memory_budget: Annotated[Optional[float], typer.Option("--memory-budget", help="Peak RSS budget in MB (2**20 bytes): measured trials pick the batch size, or learn fails before training.")] = None,
        holdout: Annotated[float, typer.Option(help="Fraction of each class held out for testing when the folder has no test/ split.")] = 0.2,
        device: Annotated[str, typer.Option(help="auto | cpu | cuda[:N].")] = "auto",
        as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    ) -> None:
        """Learn one more task from a folder of new classes (self-distillation; earlier tasks stay bit-identical)."""
        from rich.table import Table

        from mind_edge.cli import RichReporter
        from mind_edge.learn import learn

        with RichReporter(console) as rep:
            res = learn(run_dir, data, out, epochs=epochs, distill_epochs=distill_epochs, lr=lr, distill_lr=distill_lr,
                        batch_size=batch_size, memory_budget_mb=memory_budget, device=device, holdout=holdout,
                        reporter=rep)
        if as_json:
            typer.echo(json.dumps(res.summary()))
            return
        table = Table(title=text(f"learned task {res.task} → {res.out}"), title_justify="left", show_header=False)
        table.add_column("field", style="bold")
        table.add_column("value")
        table.add_row("classes", text(", ".join(f"{n} (id {c})" for n, c in zip(res.class_names, res.classes))))
        table.add_row("data", text(f"{res.train_images} training images, {res.test_images} test images ({res.test_split})"))
        if res.new_task:
            nt = res.new_task
            table.add_row("new task", f"TAW {nt['taw']:.3f} · TAG {nt['tag']:.3f} · routed to it {nt['routing']:.3f}")
        f = res.final
        if f.get("tag") is not None:
            table.add_row("all tasks", f"TAG {f['tag']:.3f} · TAW {f['taw']:.3f} · routing {f['routing']:.3f} "
                                       f"(tasks evaluated: {', '.join(map(str, res.evaluated_tasks))})")
        table.add_row("batch size", str(res.batch_size))
        mem = f"peak RSS {res.peak_rss_mb:.0f} MB"
        if res.memory is not None:
            m = res.memory
            mem += (f" (budget {m.budget_mb:g} MB, predicted {m.predicted_peak_mb:.0f} MB from "
                    + ", ".join(f"batch {t.batch_size}: +{t.increment_mb:.0f} MB" for t in m.trials) + ")")
        table.add_row("memory", mem)
        table.add_row("time", f"{res.seconds:.1f} s")
        console.print(table)

    # ------------------------------------------------------------------------- keygen
    @app.command("keygen")
    @handle_errors
    def keygen_cmd(
        key: Annotated[Path, typer.Argument(help="Secret key file to write (mode 0600); the public key goes to KEY.pub.")],
        overwrite: Annotated[bool, typer.Option(help="Replace existing key files.")] = False,
    ) -> None:
        """Make an Ed25519 key pair for signing task patches."""
        from mind_edge.runtime.signing import generate_keypair

        kp = generate_keypair(key, overwrite=overwrite)
        console.print(f"secret key: [bold]{m(kp.secret_path)}[/] (keep it on the build host)\n"
                      f"public key: [bold]{m(kp.public_path)}[/] (copy it to devices: 'mind-edge patch trust BUNDLE "
                      f"KEY.pub' pins it; or --verify-key)\nkey id: {kp.key_id}", highlight=False)

    # ------------------------------------------------------------------------- patch create
    @patch_app.command("create")
    @handle_errors
    def create_cmd(
        run_dir: Annotated[Path, typer.Argument(help="The run directory that learned the task.")],
        out: Annotated[Path, typer.Option("--out", "-o", help="Patch file to write, e.g. task4.mepatch.")],
        task: Annotated[Optional[int], typer.Option(help="Task index to ship (default: the run's last task).")] = None,
        sign_key: Annotated[Optional[Path], typer.Option("--sign-key", help="Secret key file (mind-edge keygen) to sign the patch with.")] = None,
        base: Annotated[Optional[Path], typer.Option(help="The deployed bundle the patch is for (optional): checked to be the run's first TASK tasks.")] = None,
        overwrite: Annotated[bool, typer.Option(help="Replace an existing patch file.")] = False,
        as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    ) -> None:
        """Write the task patch of one learned task (claimed positions, values, BN set, head, classes)."""
        from mind_edge.export.patch import create_patch

        res = create_patch(run_dir, out, task=task, sign_key=sign_key, base=base, overwrite=overwrite)
        if as_json:
            typer.echo(json.dumps(res.summary()))
            return
        console.print(
            f"patch [bold]{m(res.path)}[/]: task {res.task}, classes {m(', '.join(res.class_names))}; "
            f"{res.patch_bytes:,} bytes = {100 * res.ratio:.1f} % of the patched model.onnx ({res.model_bytes:,} bytes); "
            f"{res.claimed_weights:,} of {res.dense_weights:,} weights; "
            f"{'signed' if res.signed else 'unsigned'}; sha256 {res.sha256[:16]}…", highlight=False)

    # ------------------------------------------------------------------------- patch inspect
    @patch_app.command("inspect")
    @handle_errors
    def inspect_cmd(
        target: Annotated[Path, typer.Argument(help="A patch file (or a bundle folder: its versions and patch history).")],
        verify_key: Annotated[Optional[Path], typer.Option("--verify-key", help="Public key to check the signature with.")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    ) -> None:
        """Show a patch (task, classes, base fingerprint, sizes, signature) or a bundle's versions."""
        from rich.table import Table

        from mind_edge.runtime.patch import bundle_status, read_patch, verify_signature

        if target.is_dir():
            st = bundle_status(target)
            if as_json:
                typer.echo(json.dumps(st))
                return
            trust = ", ".join(st["trusted_keys"]) or "none pinned (mind-edge patch trust)"
            console.print(text(f"bundle {st['bundle']}: live version {st['version'] or '(plain, never patched)'}, "
                               f"{st['num_tasks']} tasks; versions kept: {', '.join(st['versions']) or '-'}; "
                               f"trusted keys: {trust}"), highlight=False)
            for rec in st["patches"]:
                console.print(text(f"  task {rec['task']}: {', '.join(rec['class_names'])} — patch {rec['sha256'][:16]}… "
                                   f"applied {rec.get('applied')}"
                                   f"{' signed by ' + rec['signed_by'] if rec.get('signed_by') else ''}"), highlight=False)
            return
        p = read_patch(target, decode=False)  # inspect shows the checked header; the payload is never decoded here
        checked = verify_signature(p, verify_key) if verify_key is not None else None
        s = p.summary()
        s["signature_verified_with"] = checked
        if as_json:
            typer.echo(json.dumps(s))
            return
        table = Table(title=text(f"patch {target}"), title_justify="left", show_header=False)
        table.add_column("field", style="bold")
        table.add_column("value")
        table.add_row("task", text(f"{s['task']}: {', '.join(f'{n} (id {c})' for n, c in zip(s['class_names'], s['classes']))}"))
        net = s["net"]
        table.add_row("network", text(f"{net['arch']} width {net['width']} input {net['in_channels']}x{net['input_size'][0]}x"
                                      f"{net['input_size'][1]} capacity {net['capacity']}"))
        table.add_row("base", f"{s['base']['num_tasks']} tasks, fingerprint {s['base']['fingerprint'][:16]}…")
        table.add_row("result", f"fingerprint {s['result_fingerprint'][:16]}…")
        table.add_row("content", f"{s['claimed_weights']:,} claimed weights (positions: "
                                 f"{', '.join(f'{k} ×{v}' for k, v in s['encodings'].items())}), BN sets, head")
        table.add_row("size", f"{s['total_bytes']:,} bytes (payload {s['payload_bytes']:,})")
        sig = s["signature"]
        table.add_row("signature", "none" if not p.signed else f"ed25519, key {sig.get('key_id') if sig else '?'}"
                      + (f" — [green]verified[/] with {m(verify_key)}" if checked else " (not checked; pass --verify-key)"))
        table.add_row("sha256", s["sha256"])
        table.add_row("created", text(f"{s.get('created')} by {s.get('creator')}"))
        console.print(table)

    # ------------------------------------------------------------------------- patch apply
    @patch_app.command("apply")
    @handle_errors
    def apply_cmd(
        bundle: Annotated[Path, typer.Argument(help="The deployed bundle folder.")],
        patch: Annotated[Path, typer.Argument(help="The patch file.")],
        verify_key: Annotated[Optional[Path], typer.Option("--verify-key", help="Public key: the patch must carry a valid signature by it (a bundle with trusted keys, see 'patch trust', requires one of them anyway).")] = None,
        keep: Annotated[int, typer.Option(help="Versions to keep (the new one and its predecessors; >= 2 for rollback).")] = 2,
        as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    ) -> None:
        """Verify, apply and validate a patch, then switch the bundle to the new version atomically.

        Exit codes: 0 applied; 2 refused or failed (the bundle is unchanged); 3 already applied (nothing to do).
        """
        from mind_edge.runtime.patch import apply_patch

        res = apply_patch(bundle, patch, verify_key=verify_key, keep=keep)
        if as_json:
            typer.echo(json.dumps(res.summary()))
            return
        console.print(
            f"bundle [bold]{m(res.bundle)}[/] now at version {res.version} (previous {res.previous} kept for rollback): "
            f"task {res.task} added ({m(', '.join(res.class_names))}); earlier tasks' logits on the probe batch moved "
            f"{res.max_abs_diff:.1e}; {'signature verified (key ' + res.signed_by + ')' if res.signed_by else 'no signature checked'}; "
            f"{res.seconds:.2f} s", highlight=False)

    # ------------------------------------------------------------------------- patch rollback
    @patch_app.command("rollback")
    @handle_errors
    def rollback_cmd(
        bundle: Annotated[Path, typer.Argument(help="A bundle folder updated by 'mind-edge patch apply'.")],
        as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    ) -> None:
        """Switch the bundle back to the version before the last patch (atomically)."""
        from mind_edge.runtime.patch import rollback

        res = rollback(bundle)
        if as_json:
            typer.echo(json.dumps({"bundle": str(res.bundle), "version": res.version, "removed": res.removed,
                                   "num_tasks": res.num_tasks}))
            return
        console.print(f"bundle [bold]{m(res.bundle)}[/] rolled back to version {res.version} ({res.num_tasks} tasks); "
                      f"version {res.removed} removed", highlight=False)

    # ------------------------------------------------------------------------- patch trust
    @patch_app.command("trust")
    @handle_errors
    def trust_cmd(
        bundle: Annotated[Path, typer.Argument(help="The bundle folder (plain or versioned).")],
        key: Annotated[Optional[Path], typer.Argument(help="Public key file (KEY.pub of 'mind-edge keygen') to pin.")] = None,
        remove: Annotated[Optional[str], typer.Option("--remove", help="Key id to remove from the bundle's trusted keys.")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    ) -> None:
        """Pin public keys in a bundle (TRUSTED_KEYS): every later 'patch apply' then requires a signature by one of them.

        Without KEY and --remove: list the trusted keys.
        """
        from mind_edge.runtime.patch import _bundle_root
        from mind_edge.runtime.signing import read_trusted_keys, trust_key, untrust_key

        root = _bundle_root(bundle)
        added = None
        if key is not None and remove is not None:
            from mind_edge.errors import ConfigError

            raise ConfigError("pass either a KEY to trust or --remove KEY_ID, not both")
        if key is not None:
            kid, added = trust_key(root, key)
        elif remove is not None:
            untrust_key(root, remove)
        keys = [k for k, _ in read_trusted_keys(root)]
        if as_json:
            typer.echo(json.dumps({"bundle": str(root), "trusted_keys": keys, "added": added}))
            return
        if key is not None:
            console.print(text(f"bundle {root}: key {kid} {'now trusted' if added else 'was already trusted'}; "
                               "every 'patch apply' requires a signature by one of its trusted keys"), highlight=False)
        console.print(text(f"trusted keys of {root}: {', '.join(keys) if keys else 'none (any patch applies; pass --verify-key to require a signature)'}"),
                      highlight=False)

    app.add_typer(patch_app, name="patch")
