"""`mind-edge deploy`: -o is ssh's option (as in ssh itself), never --out (issue 13)."""

from __future__ import annotations

import typer
from cli_helpers import one_error_line
from typer.testing import CliRunner

from mind_edge.cli import app as cli_app


def _app():
    return cli_app


def test_dash_o_belongs_to_ssh_only(tmp_path):
    app = _app()
    deploy = typer.main.get_command(app).commands["deploy"]
    owners = {p.name: p.opts + p.secondary_opts for p in deploy.params if "-o" in p.opts + p.secondary_opts}
    assert list(owners) == ["ssh_option"], owners
    assert "--out" in [o for p in deploy.params for o in p.opts]
    # '-o results.json' (meant as --out) is refused as an ssh option before anything is contacted
    line = one_error_line(
        CliRunner().invoke(app, ["deploy", str(tmp_path), "--host", "jetson@orin.local", "-o", "results.json"])
    )
    assert "KEY=VALUE" in line and "results.json" in line
