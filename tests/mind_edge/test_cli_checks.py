"""The CLI's cheap checks come first, option defaults, --version, missing extras (issue 13)."""

from __future__ import annotations

import importlib.util
import json

import pytest
from cli_helpers import one_error_line
from typer.testing import CliRunner

import mind_edge.cli as cli
from mind_edge import __version__
from mind_edge.console import DEFAULTS_ENV
from mind_edge.errors import MindEdgeError


def _run(*args, env=None):
    return CliRunner().invoke(cli.app, [str(a) for a in args], env=env)


@pytest.fixture
def nothing_loads(monkeypatch):
    """Fail the test if a command gets as far as loading data, training or exporting."""
    import mind_edge.export.exporter as exporter
    import mind_edge.run as run

    def loaded(*a, **k):
        raise AssertionError("the command loaded something before checking its arguments")

    monkeypatch.setattr(run, "train_run", loaded)
    monkeypatch.setattr(exporter, "export_bundle", loaded)


def test_version():
    r = _run("--version")
    assert r.exit_code == 0 and r.stdout.strip() == f"mind-edge {__version__}"


def test_train_checks_before_loading(nothing_loads, tmp_path):
    assert "unknown dataset 'digitz'" in one_error_line(_run("train", "--dataset", "digitz", "--out", tmp_path / "a"))
    assert "needs --root" in one_error_line(_run("train", "--dataset", "imagefolder", "--out", tmp_path / "a"))
    line = one_error_line(
        _run("train", "--dataset", "imagefolder", "--data-root", tmp_path / "nope", "--out", tmp_path / "a")
    )
    assert "--root" in line and "does not exist" in line and "--data-root" not in line
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "checkpoint.safetensors").write_bytes(b"mine")
    assert "is not empty" in one_error_line(_run("train", "--out", tmp_path / "full"))
    assert (tmp_path / "full" / "checkpoint.safetensors").read_bytes() == b"mine"
    assert "--stop-after" in one_error_line(_run("train", "--tasks", "5", "--stop-after", "6", "--out", tmp_path / "b"))


def test_export_checks_before_loading(nothing_loads, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "model.onnx").write_bytes(b"x")
    assert "does not exist" in one_error_line(_run("export", tmp_path / "missing", "--out", tmp_path / "b"))
    assert "opset 25 is not supported" in one_error_line(_run("export", run, "--out", tmp_path / "b", "--opset", "25"))
    assert "unknown layout 'sparse'" in one_error_line(
        _run("export", run, "--out", tmp_path / "b", "--layout", "sparse")
    )
    assert "run.json" in one_error_line(_run("export", run, "--out", tmp_path / "b"))  # not a run directory


def test_option_defaults_file(monkeypatch, tmp_path):
    import mind_edge.run as run

    seen = {}

    def fake_train_run(spec, out, **kw):
        seen["spec"] = spec
        raise MindEdgeError("stopped here")

    monkeypatch.setattr(run, "train_run", fake_train_run)
    defaults = tmp_path / "defaults.json"
    defaults.write_text(json.dumps({"train": {"epochs": 3, "width": 0.5}}))
    env = {DEFAULTS_ENV: str(defaults)}
    one_error_line(_run("train", "--out", tmp_path / "a", "--epochs", "7", env=env))
    assert seen["spec"].train.epochs == 7 and seen["spec"].width == 0.5  # the command line wins over the file
    defaults.write_text("{not json")
    assert DEFAULTS_ENV in one_error_line(_run("train", "--out", tmp_path / "a", env=env))


def test_a_missing_extra_is_one_line_naming_it(monkeypatch, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a))
    for args in (["train", "--out", tmp_path / "a"], ["demo", "--out", tmp_path / "d"]):
        line = one_error_line(_run(*args))
        assert "'torch'" in line and "pip install 'mind-edge[train]'" in line
    assert not any(tmp_path.iterdir())


def test_a_missing_device_package_names_the_device_extra(monkeypatch, tmp_path):
    import sys

    monkeypatch.setitem(sys.modules, "nacl", None)  # import nacl -> ImportError, as without pynacl
    monkeypatch.setitem(sys.modules, "nacl.signing", None)
    line = one_error_line(_run("keygen", tmp_path / "k"))
    assert "pip install 'mind-edge[sign]'" in line and "'mind-edge[device]'" in line


def test_field_table_title_is_data_not_markup():
    from rich.console import Console
    from rich.text import Text

    from mind_edge.textsafe import field_table

    con = Console(record=True, width=80)
    table = field_table("[red]x[/]")
    table.add_row("k", "v")
    con.print(table)
    assert "[red]x[/]" in con.export_text()
    assert [c.header for c in table.columns] == ["field", "value"] and not table.show_header
    assert table.title_justify == "left" and field_table(Text("t"), justify_left=False).title_justify == "center"
