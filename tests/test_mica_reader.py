import pickle

import numpy as np
import pytest
from PIL import Image

from ofer.data.mica import MicaDataset, read_flame_params
from ofer.errors import InputError


def build_layout(root):
    (root / "image_paths").mkdir(parents=True)
    table = {}
    for actor, kind in (("a1", "betas"), ("a2", "split")):
        folder = root / "TOY" / "images" / actor
        folder.mkdir(parents=True)
        rgb = np.zeros((8, 8, 3), np.uint8)
        rgb[..., 0] = 200  # red
        Image.fromarray(rgb).save(folder / "0.png")
        np.save(folder / "1.npy", rgb[..., ::-1])  # stored BGR, as the authors' scripts did
        params = root / "TOY" / "FLAME_parameters" / f"{actor}.npz"
        params.parent.mkdir(parents=True, exist_ok=True)
        if kind == "betas":
            np.savez(params, betas=np.arange(400, dtype=np.float32))
        else:
            np.savez(params, shape=np.ones(300), exp=np.full(100, 2.0), pose=np.arange(6, dtype=np.float32))
        table[actor] = ([f"images/{actor}/0.png", f"images/{actor}/1.npy"], f"FLAME_parameters/{actor}.npz")
    with open(root / "image_paths" / "TOY.npy", "wb") as handle:
        pickle.dump(table, handle)
    return root


def test_reads_tiny_layout(tmp_path):
    ds = MicaDataset(build_layout(tmp_path), ["TOY"], expression_dim=50)
    assert len(ds) == 4
    first = ds[0]
    assert first["actor"] == "a1" and first["image"].shape == (8, 8, 3)
    assert first["shape"].shape == (300,) and float(first["shape"][299]) == 299
    assert float(first["expression"][0]) == 300 and first["expression"].shape == (50,)
    npy = ds[1]["image"]
    assert npy[0, 0, 0] == 200 and npy[0, 0, 2] == 0  # BGR .npy comes back as RGB
    split = ds[2]
    assert float(split["expression"][0]) == 2.0 and split["jaw"].tolist() == [3.0, 4.0, 5.0]


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(InputError, match="no index"):
        MicaDataset(tmp_path, ["NOPE"])
    np.savez(tmp_path / "p.npz", other=np.zeros(3))
    with pytest.raises(InputError, match="no 'betas' or 'shape'"):
        read_flame_params(tmp_path / "p.npz")
