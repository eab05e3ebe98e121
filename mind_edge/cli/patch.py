"""On-device updates: ``mind-edge keygen`` and ``mind-edge patch create|inspect|apply|rollback|trust``.

``patch apply``, ``patch rollback``, ``patch inspect``, ``patch trust`` and ``keygen`` run on a
device without PyTorch; ``patch create`` reads a run's checkpoint on the host and imports the
torch side inside the command (see the package docstring).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from mind_edge.cli.options import JsonPlainOpt, JsonResultOpt
from mind_edge.console import console
from mind_edge.errors import ConfigError
from mind_edge.runtime.patch import _bundle_root, apply_patch, bundle_status, read_patch, verify_signature
from mind_edge.runtime.patch import rollback as rollback_patch
from mind_edge.runtime.signing import generate_keypair, read_trusted_keys, trust_key, untrust_key
from mind_edge.textsafe import field_table, text
from mind_edge.textsafe import markup as m


def keygen(
    key: Annotated[Path, typer.Argument(help="Secret key file to write (mode 0600); the public key goes to KEY.pub.")],
    overwrite: Annotated[bool, typer.Option(help="Replace existing key files.")] = False,
) -> None:
    """Make an Ed25519 key pair for signing task patches."""
    kp = generate_keypair(key, overwrite=overwrite)
    console.print(
        f"secret key: [bold]{m(kp.secret_path)}[/] (keep it on the build host)\n"
        f"public key: [bold]{m(kp.public_path)}[/] (copy it to devices: 'mind-edge patch trust BUNDLE "
        f"KEY.pub' pins it; or --verify-key)\nkey id: {kp.key_id}",
        highlight=False,
    )


def create(
    run_dir: Annotated[Path, typer.Argument(help="The run directory that learned the task.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Patch file to write, e.g. task4.mepatch.")],
    task: Annotated[Optional[int], typer.Option(help="Task index to ship (default: the run's last task).")] = None,
    sign_key: Annotated[
        Optional[Path], typer.Option("--sign-key", help="Secret key file (mind-edge keygen) to sign the patch with.")
    ] = None,
    base: Annotated[
        Optional[Path],
        typer.Option(help="The deployed bundle the patch is for (optional): checked to be the run's first TASK tasks."),
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing patch file.")] = False,
    as_json: JsonResultOpt = False,
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
        f"{'signed' if res.signed else 'unsigned'}; sha256 {res.sha256[:16]}…",
        highlight=False,
    )


def inspect(
    target: Annotated[Path, typer.Argument(help="A patch file (or a bundle folder: its versions and patch history).")],
    verify_key: Annotated[
        Optional[Path], typer.Option("--verify-key", help="Public key to check the signature with.")
    ] = None,
    as_json: JsonPlainOpt = False,
) -> None:
    """Show a patch (task, classes, base fingerprint, sizes, signature) or a bundle's versions."""
    if target.is_dir():
        st = bundle_status(target)
        if as_json:
            typer.echo(json.dumps(st))
            return
        trust = ", ".join(st["trusted_keys"]) or "none pinned (mind-edge patch trust)"
        console.print(
            text(
                f"bundle {st['bundle']}: live version {st['version'] or '(plain, never patched)'}, "
                f"{st['num_tasks']} tasks; versions kept: {', '.join(st['versions']) or '-'}; "
                f"trusted keys: {trust}"
            ),
            highlight=False,
        )
        for rec in st["patches"]:
            console.print(
                text(
                    f"  task {rec['task']}: {', '.join(rec['class_names'])} — patch {rec['sha256'][:16]}… "
                    f"applied {rec.get('applied')}"
                    f"{' signed by ' + rec['signed_by'] if rec.get('signed_by') else ''}"
                ),
                highlight=False,
            )
        return
    p = read_patch(target, decode=False)  # inspect shows the checked header; the payload is never decoded here
    checked = verify_signature(p, verify_key) if verify_key is not None else None
    s = p.summary()
    s["signature_verified_with"] = checked
    if as_json:
        typer.echo(json.dumps(s))
        return
    table = field_table(f"patch {target}")
    table.add_row(
        "task", text(f"{s['task']}: {', '.join(f'{n} (id {c})' for n, c in zip(s['class_names'], s['classes']))}")
    )
    net = s["net"]
    table.add_row(
        "network",
        text(
            f"{net['arch']} width {net['width']} input {net['in_channels']}x{net['input_size'][0]}x"
            f"{net['input_size'][1]} capacity {net['capacity']}"
        ),
    )
    table.add_row("base", f"{s['base']['num_tasks']} tasks, fingerprint {s['base']['fingerprint'][:16]}…")
    table.add_row("result", f"fingerprint {s['result_fingerprint'][:16]}…")
    table.add_row(
        "content",
        f"{s['claimed_weights']:,} claimed weights (positions: "
        f"{', '.join(f'{k} ×{v}' for k, v in s['encodings'].items())}), BN sets, head",
    )
    table.add_row("size", f"{s['total_bytes']:,} bytes (payload {s['payload_bytes']:,})")
    sig = s["signature"]
    table.add_row(
        "signature",
        "none"
        if not p.signed
        else f"ed25519, key {sig.get('key_id') if sig else '?'}"
        + (f" — [green]verified[/] with {m(verify_key)}" if checked else " (not checked; pass --verify-key)"),
    )
    table.add_row("sha256", s["sha256"])
    table.add_row("created", text(f"{s.get('created')} by {s.get('creator')}"))
    console.print(table)


def apply(
    bundle: Annotated[Path, typer.Argument(help="The deployed bundle folder.")],
    patch: Annotated[Path, typer.Argument(help="The patch file.")],
    verify_key: Annotated[
        Optional[Path],
        typer.Option(
            "--verify-key",
            help="Public key: the patch must carry a valid signature by it (a bundle with trusted keys, see "
            "'patch trust', requires one of them anyway).",
        ),
    ] = None,
    keep: Annotated[
        int, typer.Option(help="Versions to keep (the new one and its predecessors; >= 2 for rollback).")
    ] = 2,
    as_json: JsonResultOpt = False,
) -> None:
    """Verify, apply and validate a patch, then switch the bundle to the new version atomically.

    Exit codes: 0 applied; 2 refused or failed (the bundle is unchanged); 3 already applied (nothing to do).
    """
    res = apply_patch(bundle, patch, verify_key=verify_key, keep=keep)
    if as_json:
        typer.echo(json.dumps(res.summary()))
        return
    signature = f"signature verified (key {res.signed_by})" if res.signed_by else "no signature checked"
    console.print(
        f"bundle [bold]{m(res.bundle)}[/] now at version {res.version} (previous {res.previous} kept for rollback): "
        f"task {res.task} added ({m(', '.join(res.class_names))}); earlier tasks' logits on the probe batch moved "
        f"{res.max_abs_diff:.1e}; {signature}; {res.seconds:.2f} s",
        highlight=False,
    )


def rollback(
    bundle: Annotated[Path, typer.Argument(help="A bundle folder updated by 'mind-edge patch apply'.")],
    as_json: JsonResultOpt = False,
) -> None:
    """Switch the bundle back to the version before the last patch (atomically)."""
    res = rollback_patch(bundle)
    if as_json:
        typer.echo(
            json.dumps(
                {"bundle": str(res.bundle), "version": res.version, "removed": res.removed, "num_tasks": res.num_tasks}
            )
        )
        return
    console.print(
        f"bundle [bold]{m(res.bundle)}[/] rolled back to version {res.version} ({res.num_tasks} tasks); "
        f"version {res.removed} removed",
        highlight=False,
    )


def trust(
    bundle: Annotated[Path, typer.Argument(help="The bundle folder (plain or versioned).")],
    key: Annotated[
        Optional[Path], typer.Argument(help="Public key file (KEY.pub of 'mind-edge keygen') to pin.")
    ] = None,
    remove: Annotated[
        Optional[str], typer.Option("--remove", help="Key id to remove from the bundle's trusted keys.")
    ] = None,
    as_json: JsonPlainOpt = False,
) -> None:
    """Pin public keys in a bundle (TRUSTED_KEYS): every later 'patch apply' then requires a signature by one of them.

    Without KEY and --remove: list the trusted keys.
    """
    root = _bundle_root(bundle)
    added = None
    if key is not None and remove is not None:
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
        console.print(
            text(
                f"bundle {root}: key {kid} {'now trusted' if added else 'was already trusted'}; "
                "every 'patch apply' requires a signature by one of its trusted keys"
            ),
            highlight=False,
        )
    listed = ", ".join(keys) if keys else "none (any patch applies; pass --verify-key to require a signature)"
    console.print(text(f"trusted keys of {root}: {listed}"), highlight=False)
