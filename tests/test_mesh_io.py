import numpy as np
import pytest
import torch

from ofer.errors import InputError
from ofer.io import load_mesh, save_mesh

VERTS = np.array([[0.0, 0.0, 0.0], [0.1, 0.0, 0.0], [0.0, 0.2, 0.0], [0.0, 0.0, 0.3]])
FACES = np.array([[0, 1, 2], [0, 1, 3], [0, 2, 3], [1, 2, 3]])


@pytest.mark.parametrize("suffix", [".ply", ".obj"])
@pytest.mark.parametrize("units", ["m", "mm"])
def test_round_trip(tmp_path, suffix, units):
    path = save_mesh(tmp_path / f"t{suffix}", torch.tensor(VERTS), torch.tensor(FACES), units=units)
    v, f = load_mesh(path, units=units)
    np.testing.assert_allclose(v, VERTS, atol=1e-6)
    assert np.array_equal(f, FACES)


def test_mm_file_holds_millimetres(tmp_path):
    path = save_mesh(tmp_path / "t.ply", VERTS, FACES, units="mm")
    v, _ = load_mesh(path, units="m")
    np.testing.assert_allclose(v, VERTS * 1000, atol=1e-4)


def test_bad_inputs(tmp_path):
    with pytest.raises(InputError, match="unsupported mesh format"):
        save_mesh(tmp_path / "t.stl", VERTS, FACES)
    with pytest.raises(InputError, match="file not found"):
        load_mesh(tmp_path / "missing.ply")
    junk = tmp_path / "junk.ply"
    junk.write_bytes(b"\x00garbage")
    with pytest.raises(InputError, match="junk.ply"):
        load_mesh(junk)


def test_failed_write_keeps_previous_file(tmp_path, monkeypatch):
    path = save_mesh(tmp_path / "keep.ply", VERTS, FACES)
    before = path.read_bytes()
    import trimesh

    def explode(self, *args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(trimesh.Trimesh, "export", explode)
    with pytest.raises(RuntimeError):
        save_mesh(path, VERTS * 2, FACES)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["keep.ply"]
