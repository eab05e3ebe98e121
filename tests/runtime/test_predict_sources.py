"""`mind-edge predict` takes folders and glob patterns, and refuses a provider it cannot use (issue 13)."""

from __future__ import annotations

import json
import shutil

import pytest
from cli_helpers import one_error_line
from runtime_helpers import predict_app, run_cli

from mind_edge.runtime.errors import InputError
from mind_edge.runtime.predict import collect_images


@pytest.fixture(scope="module")
def app():
    return predict_app()


_run = run_cli


@pytest.fixture
def image_tree(rgb_images, tmp_path):
    """test/<class>/imgN.png plus a hidden file and a text file that a folder must skip."""
    paths, _ = rgb_images
    root = tmp_path / "test"
    for i, p in enumerate(paths[:4]):
        d = root / f"c{i % 2}"
        d.mkdir(parents=True, exist_ok=True)
        shutil.copy(p, d / p.name)
    (root / "notes.txt").write_text("not an image")
    (root / ".hidden").mkdir()
    shutil.copy(paths[0], root / ".hidden" / "x.png")
    return root


def test_collect_images_folders_globs_files(image_tree, tmp_path):
    found = collect_images([image_tree])
    assert [p.relative_to(image_tree).as_posix() for p in found] == [
        "c0/img0.png",
        "c0/img2.png",
        "c1/img1.png",
        "c1/img3.png",
    ]
    assert collect_images([str(image_tree / "c1" / "*.png")]) == [
        image_tree / "c1" / "img1.png",
        image_tree / "c1" / "img3.png",
    ]
    assert collect_images([str(image_tree / "**" / "img0.png")]) == [image_tree / "c0" / "img0.png"]
    assert collect_images([image_tree / "c0" / "img2.png", image_tree / "c1"])[0] == image_tree / "c0" / "img2.png"
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="holds no image files"):
        collect_images([tmp_path / "empty"])
    with pytest.raises(InputError, match="no file matches"):
        collect_images([str(tmp_path / "nothing" / "*.jpg")])


def test_predict_a_folder_and_a_glob(app, rgb_bundle, image_tree):
    r = _run(app, "predict", rgb_bundle, image_tree, "--json", "--providers", "cpu")
    assert r.exit_code == 0, r.output
    files = [p["file"] for p in json.loads(r.stdout)["predictions"]]
    assert len(files) == 4 and all(f.endswith(".png") for f in files)
    r = _run(app, "predict", rgb_bundle, str(image_tree / "c0" / "*.png"), "--json")
    assert r.exit_code == 0, r.output
    assert len(json.loads(r.stdout)["predictions"]) == 2
    line = one_error_line(_run(app, "predict", rgb_bundle, image_tree / "c0" / "nothing-*.png"))
    assert "no file matches" in line


def test_an_unavailable_provider_asked_for_is_an_error(app, rgb_bundle, rgb_images):
    import onnxruntime as ort

    if "TensorrtExecutionProvider" in ort.get_available_providers():  # pragma: no cover - a TensorRT machine
        pytest.skip("TensorRT is available here")
    line = one_error_line(_run(app, "predict", rgb_bundle, rgb_images[0][0], "--providers", "tensorrt"))
    assert "tensorrt is not available" in line and "--providers tensorrt,cpu" in line
    r = _run(app, "predict", rgb_bundle, rgb_images[0][0], "--providers", "tensorrt,cpu", "--json")
    assert r.exit_code == 0, r.output  # cpu in the list: the fallback was allowed explicitly
    assert json.loads(r.stdout)["providers"] == ["CPUExecutionProvider"]
