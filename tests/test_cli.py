"""The `ofer` command: info, facemodel export, and one-line errors."""

import subprocess
import sys

import numpy as np
import pytest

from conftest import ICT_NPZ, require
from ofer.cli.main import main
from ofer.io import load_mesh


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_info_lists_default(capsys):
    code, out, _ = run(capsys, "info")
    assert code == 0
    line = next(row for row in out.splitlines() if row.strip().startswith("default"))
    assert "shape_dim=" in line and "expression_dim=52" in line and "vertices" in line


def test_export_seeds_differ_and_expression_changes_face(capsys, tmp_path, default_model):
    paths = {}
    for name, extra in {"s3": ["--seed", "3"], "s4": ["--seed", "4"], "s3e": ["--seed", "3", "--expression", "random"]}.items():
        paths[name] = tmp_path / f"{name}.ply"
        assert run(capsys, "facemodel", "export", "--model", "default", *extra, "-o", str(paths[name]))[0] == 0
    v3, f3 = load_mesh(paths["s3"])
    v4, f4 = load_mesh(paths["s4"])
    v3e, _ = load_mesh(paths["s3e"])
    assert len(v3) == len(v4) >= 3000 and np.array_equal(f3, f4)
    assert np.abs(v3 - v4).max() > 1e-3
    moved = np.linalg.norm(v3e - v3, axis=1) > 1e-4
    face = default_model.front_mask.numpy()
    assert moved.any() and moved[face].mean() > moved[~face].mean()  # the face moves, not the skull


def test_export_mm_units(capsys, tmp_path):
    assert run(capsys, "facemodel", "export", "--units", "mm", "-o", str(tmp_path / "h.obj"))[0] == 0
    v, _ = load_mesh(tmp_path / "h.obj", units="m")
    assert np.ptp(v[:, 1]) > 100  # numbers in the file are millimetres


def test_export_ict(capsys, tmp_path):
    spec = f"npz:{require(ICT_NPZ)}"
    assert run(capsys, "facemodel", "export", "--model", spec, "--seed", "1", "-o", str(tmp_path / "ict.ply"))[0] == 0
    assert len(load_mesh(tmp_path / "ict.ply")[0]) == 9409


@pytest.mark.parametrize(
    "model, message",
    [("flame:/nonexistent.pkl", "/nonexistent.pkl: file not found"), ("bfm:x", "unknown face model")],
)
def test_bad_model_is_one_line_error(capsys, tmp_path, model, message):
    code, out, err = run(capsys, "facemodel", "export", "--model", model, "-o", str(tmp_path / "x.ply"))
    assert code != 0 and message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "x.ply").exists()


def test_console_entry_point_runs_as_module(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "ofer", "facemodel", "export", "--model", "flame:/nonexistent.pkl", "-o", str(tmp_path / "x.ply")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == "ofer: error: flame: /nonexistent.pkl: file not found"
