"""The method layer without trained networks: registry, settings, per-image generators, result names, writes."""

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from ofer.config import ConfigError
from ofer.errors import OferError
from ofer.io.atomic import replace_dir
from ofer.methods import Hypotheses, ReconstructionSettings, available, get, image_generator
from ofer.methods.outputs import MARKER, result_names, write_reconstruction


def test_builtin_methods_are_registered():
    assert {"ofer", "prior", "regressor"} <= set(available())
    assert get("ofer").label == "OFER" and get("prior").label == "random prior"
    with pytest.raises(OferError, match="unknown method 'nope'"):
        get("nope")


@pytest.mark.parametrize("field, value", [("shapes", 0), ("expressions", -1), ("steps", 2000), ("steps", 0),
                                          ("sampler", "euler"), ("seed", -3), ("jaw_scale", float("nan")),
                                          ("shapes", True)])
def test_settings_are_validated_at_construction(field, value):
    with pytest.raises(ConfigError):
        ReconstructionSettings(**{field: value})


def test_settings_round_trip_strictly():
    settings = ReconstructionSettings(shapes=7, steps=9)
    assert ReconstructionSettings.from_dict(settings.to_dict()) == settings
    with pytest.raises(ConfigError, match="unknown ReconstructionSettings field"):
        ReconstructionSettings.from_dict({**settings.to_dict(), "shapez": 3})


def test_image_generators_are_independent_streams():
    draw = lambda seed, key, stream: torch.randn(4, generator=image_generator(seed, key, stream))
    assert torch.equal(draw(0, "face", "idgen"), draw(0, "face", "idgen"))
    assert not torch.equal(draw(0, "face", "idgen"), draw(0, "face", "expgen"))
    assert not torch.equal(draw(0, "face", "idgen"), draw(0, "other", "idgen"))
    assert not torch.equal(draw(0, "face", "idgen"), draw(1, "face", "idgen"))
    assert torch.equal(draw(0, 3, "idgen"), draw(0, "3", "idgen"))  # protocol index == its string


def test_prior_method_is_batch_independent(default_model):
    prior = get("prior").from_run(None, default_model)
    settings = ReconstructionSettings(shapes=3, expressions=2, seed=5)
    empty = np.zeros((3, 0), np.float32)
    together = prior.hypotheses(empty, empty, settings, [0, 1, 2])
    alone = prior.hypotheses(empty[:1], empty[:1], settings, [2])
    assert isinstance(together, Hypotheses) and together.meshes.shape == (3, 2, default_model.num_vertices, 3)
    assert np.array_equal(together.meshes[2], alone.meshes[0]) and np.array_equal(together.shapes[2], alone.shapes[0])


@pytest.mark.parametrize("paths, names", [
    (["a/face.jpg", "b/face.jpg", "face_2.jpg"], ["face", "face_3", "face_2"]),
    (["..jpg", ".hidden.png", "x y.png"], ["image", "hidden", "x_y"]),
    (["p.png", "p.jpg", "p.gif"], ["p", "p_2", "p_3"]),
])
def test_result_names_are_safe_and_unique(paths, names):
    assert result_names([Path(p) for p in paths]) == names


def test_replace_dir_restores_the_old_folder_when_the_final_rename_fails(tmp_path, monkeypatch):
    target, staging = tmp_path / "res", tmp_path / "new"
    target.mkdir()
    (target / "old.txt").write_text("old")
    staging.mkdir()
    real = os.replace
    calls = []

    def flaky(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:
            raise OSError("disk full")
        return real(src, dst)

    monkeypatch.setattr(os, "replace", flaky)
    with pytest.raises(OSError):
        replace_dir(staging, target)
    assert (target / "old.txt").read_text() == "old"


def test_write_reconstruction_refuses_a_folder_it_did_not_write(tmp_path, default_model):
    from ofer.methods.base import make_reconstruction

    rec = make_reconstruction(default_model, "prior", "face", torch.zeros(1, default_model.shape_dim), torch.zeros(1), 0,
                              torch.zeros(1, default_model.code_dim))
    (tmp_path / "face").mkdir()
    (tmp_path / "face" / "mine.txt").write_text("user data")
    with pytest.raises(OferError, match="not written by ofer"):
        write_reconstruction(tmp_path, rec, default_model, {})
    assert (tmp_path / "face" / "mine.txt").read_text() == "user data"
    folder = write_reconstruction(tmp_path / "out", rec, default_model, {})
    assert (folder / MARKER).is_file()
    write_reconstruction(tmp_path / "out", rec, default_model, {})  # its own result may be replaced
