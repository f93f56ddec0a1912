"""Training infrastructure on small learnable fake data: loss decreases, exact resume, checkpoint checks."""

import json

import numpy as np
import pytest
import torch

from ofer.data.shards import Manifest, ShardRecord, arrays_checksum, shard_name, write_npz
from ofer.errors import CheckpointError
from ofer.pipeline.generator import CoefficientGenerator, Normalizer
from ofer.training import load_checkpoint
from ofer.training.train import TrainOptions, train_diffusion, train_idrank
from ofer.training.checkpoint import check_face_model


@pytest.fixture(scope="module")
def fake_data(tmp_path_factory, default_model):
    """256 samples whose ArcFace/appearance embeddings are linear in the coefficients (learnable)."""
    folder = tmp_path_factory.mktemp("fake")
    n = 256
    info = default_model.info().to_dict()
    manifest = Manifest("train", "test", info, 0, n, 64, {},
                        encoders={"identity": {"name": "arc", "dim": 512}, "appearance": {"name": "app", "dim": 16}})
    g = torch.Generator().manual_seed(0)
    prior = default_model.sample_prior(n, g, expression=True)
    arc = torch.nn.functional.normalize(prior.shape @ torch.randn(default_model.shape_dim, 512, generator=g), dim=1)
    app = prior.expression @ torch.randn(default_model.expression_dim, 16, generator=g)
    for i in range(manifest.num_shards):
        s, c = manifest.shard_range(i)
        arrays = {"shape": prior.shape[s:s + c].numpy(), "expression": prior.expression[s:s + c].numpy(),
                  "arcface": arc[s:s + c].numpy(), "appearance": app[s:s + c].numpy()}
        write_npz(folder / shard_name(i), arrays)
        manifest.shards.append(ShardRecord(shard_name(i), s, c, arrays_checksum(arrays)))
    manifest.save(folder)
    return folder


def options(data, run, **kw):
    base = dict(data=data, run=run, epochs=6, batch_size=32, lr=2e-3, seed=1, progress=False,
                candidates=8, rank_images=64, rank_steps=5, rank_vertices=64, rank_widths=[64, 32])
    base.update(kw)
    return TrainOptions(**base)


def test_idgen_loss_decreases_and_writes_run_files(fake_data, tmp_path):
    log = train_diffusion("idgen", options(fake_data, tmp_path))
    assert len(log) == 6 and log[-1]["loss"] < log[0]["loss"]
    folder = tmp_path / "idgen"
    assert {p.name for p in folder.iterdir()} >= {"last.pt", "config.json", "log.jsonl", "loss.png"}
    config = json.loads((folder / "config.json").read_text())
    assert config["face_model"]["spec"] == "default" and config["encoders"]["identity"]["name"] == "arc"
    assert len(config["normalization"]["target_mean"]) == config["face_model"]["shape_dim"]


def test_resume_continues_exactly(fake_data, tmp_path):
    train_diffusion("expgen", options(fake_data, tmp_path / "a", epochs=4))
    train_diffusion("expgen", options(fake_data, tmp_path / "b", epochs=2))
    with pytest.raises(CheckpointError, match="--resume"):
        train_diffusion("expgen", options(fake_data, tmp_path / "b", epochs=4))
    train_diffusion("expgen", options(fake_data, tmp_path / "b", epochs=4, resume=True))
    a = load_checkpoint(tmp_path / "a" / "expgen")[1]["model"]
    b = load_checkpoint(tmp_path / "b" / "expgen")[1]["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_idrank_trains_on_idgen_samples(fake_data, tmp_path):
    with pytest.raises(CheckpointError, match="train idgen first"):
        train_idrank(options(fake_data, tmp_path))
    train_diffusion("idgen", options(fake_data, tmp_path, epochs=2))
    log = train_idrank(options(fake_data, tmp_path, epochs=4, lr=1e-3))
    assert log[-1]["loss"] < log[0]["loss"]
    config, _ = load_checkpoint(tmp_path / "idrank", "idrank")
    assert len(config.extra["vertex_ids"]) == 64


def test_checkpoint_errors(fake_data, tmp_path, default_model):
    train_diffusion("idgen", options(fake_data, tmp_path, epochs=1))
    folder = tmp_path / "idgen"
    config, _ = load_checkpoint(folder, "idgen")
    other = dict(default_model.info().to_dict(), spec="npz:other.npz", shape_dim=100)
    with pytest.raises(CheckpointError, match="trained for face model 'default'.*shape_dim 106 vs 100"):
        check_face_model(config, other, folder)
    with pytest.raises(CheckpointError, match="holds a idgen network"):
        load_checkpoint(folder, "expgen")
    (folder / "last.pt").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="corrupt checkpoint"):
        CoefficientGenerator.from_checkpoint(folder, "idgen")
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "nothing")


def test_normalizer_round_trip_and_constant_dims():
    x = torch.randn(50, 4)
    x[:, 2] = 5.0
    norm = Normalizer.fit(x)
    assert float(norm.std[2]) == 1.0
    torch.testing.assert_close(norm.inverse(norm(x)), x)
    again = Normalizer.from_dict(norm.to_dict("t"), "t", "here")
    torch.testing.assert_close(again(x), norm(x))
