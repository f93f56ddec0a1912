"""Training infrastructure on small learnable fake data: loss decreases, exact resume, checkpoint checks."""

import json

import pytest
import torch

from ofer import training
from ofer.data.shards import Manifest, ShardRecord, arrays_checksum, shard_name, write_npz
from ofer.errors import CheckpointError, OferError
from ofer.methods.ofer.generator import CoefficientGenerator
from ofer.networks.normalization import Normalizer
from ofer.runs import check_face_model, load_checkpoint

ENCODERS = {"identity": {"name": "arc", "dim": 512}, "appearance": {"name": "app", "dim": 16}}


def make_fake_data(folder, model, n=256, seed=0):
    """``n`` samples whose ArcFace/appearance embeddings are linear in the coefficients (learnable)."""
    info = model.info().to_dict()
    manifest = Manifest("train", "test", info, 0, n, 64, {}, encoders=ENCODERS)
    g = torch.Generator().manual_seed(seed)
    prior = model.sample_prior(n, g, expression=True)
    arc = torch.nn.functional.normalize(prior.shape @ torch.randn(model.shape_dim, 512, generator=g), dim=1)
    app = prior.expression @ torch.randn(model.expression_dim, 16, generator=g)
    for i in range(manifest.num_shards):
        s, c = manifest.shard_range(i)
        arrays = {"shape": prior.shape[s:s + c].numpy(), "expression": prior.expression[s:s + c].numpy(),
                  "arcface": arc[s:s + c].numpy(), "appearance": app[s:s + c].numpy()}
        write_npz(folder / shard_name(i), arrays)
        manifest.shards.append(ShardRecord(shard_name(i), s, c, arrays_checksum(arrays)))
    manifest.save(folder)
    return folder


@pytest.fixture(scope="module")
def fake_data(tmp_path_factory, default_model):
    return make_fake_data(tmp_path_factory.mktemp("fake"), default_model)


RANK = dict(candidates=8, rank_images=64, rank_steps=5, rank_vertices=64, widths=[64, 32])


def options(name, data, run, **kw):
    """Small, fast options of trainer ``name`` (epochs 6, batch 32)."""
    base = dict(data=data, run=run, epochs=6, batch_size=32, lr=2e-3, seed=1, progress=False)
    if name == "idrank":
        base.update(RANK)
    base.update(kw)
    return base


def train(name, data, run, **kw):
    return training.train(name, **options(name, data, run, **kw))


def test_idgen_loss_decreases_and_writes_run_files(fake_data, tmp_path, default_model):
    log = train("idgen", fake_data, tmp_path)
    assert len(log) == 6 and log[-1]["loss"] < log[0]["loss"]
    folder = tmp_path / "idgen"
    assert {p.name for p in folder.iterdir()} >= {"last.pt", "config.json", "log.jsonl", "loss.png"}
    config = json.loads((folder / "config.json").read_text())
    assert config["face_model"]["spec"] == "default" and config["encoders"] == {"identity": ENCODERS["identity"]}
    assert config["face_model"] == default_model.info().to_dict()  # full record, with the fingerprint
    assert config["face_model"]["fingerprint"] == default_model.fingerprint()
    assert len(config["normalization"]["target_mean"]) == config["face_model"]["shape_dim"]
    assert config["training"]["batch_size"] == 32 and config["training"]["lr"] == 2e-3


def test_resume_continues_exactly(fake_data, tmp_path):
    train("expgen", fake_data, tmp_path / "a", epochs=4)
    train("expgen", fake_data, tmp_path / "b", epochs=2)
    with pytest.raises(CheckpointError, match="--resume"):
        train("expgen", fake_data, tmp_path / "b", epochs=4)
    train("expgen", fake_data, tmp_path / "b", epochs=4, resume=True, device="cpu")
    a = load_checkpoint(tmp_path / "a" / "expgen").payload["model"]
    b = load_checkpoint(tmp_path / "b" / "expgen").payload["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    rows = [json.loads(line) for line in (tmp_path / "b" / "expgen" / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4] and not any("resumed" in r for r in rows)


def test_idrank_trains_on_idgen_samples(fake_data, tmp_path):
    with pytest.raises(CheckpointError, match="train idgen first"):
        train("idrank", fake_data, tmp_path)
    train("idgen", fake_data, tmp_path, epochs=2)
    log = train("idrank", fake_data, tmp_path, epochs=4, lr=1e-3)
    assert log[-1]["loss"] < log[0]["loss"]
    config = load_checkpoint(tmp_path / "idrank", "idrank").config
    assert len(config.extra["vertex_ids"]) == 64
    assert (config.extra["sampler"], config.extra["steps"]) == ("ddim", 5)


def test_regressor_trains(fake_data, tmp_path):
    log = train("regressor", fake_data, tmp_path, epochs=3, widths=[64])
    assert log[-1]["loss"] < log[0]["loss"]
    assert load_checkpoint(tmp_path / "regressor", "regressor").config.net["widths"] == [64]


def test_checkpoint_errors(fake_data, tmp_path, default_model):
    train("idgen", fake_data, tmp_path, epochs=1)
    folder = tmp_path / "idgen"
    checkpoint = load_checkpoint(folder, "idgen")
    other = dict(default_model.info().to_dict(), spec="npz:other.npz", shape_dim=100)
    with pytest.raises(CheckpointError, match="trained for face model 'default', not 'npz:other.npz'.*shape_dim 106 vs 100"):
        check_face_model(checkpoint.config, other, folder)
    same_name = dict(default_model.info().to_dict(), shape_dim=100)
    with pytest.raises(CheckpointError, match="trained for another version of face model 'default' .shape_dim 106 vs 100"):
        check_face_model(checkpoint.config, same_name, folder)
    CoefficientGenerator.from_checkpoint(checkpoint, default_model.info().to_dict())
    with pytest.raises(CheckpointError, match="holds the idgen network, expected expgen"):
        load_checkpoint(folder, "expgen")
    (folder / "last.pt").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="corrupt checkpoint"):
        load_checkpoint(folder, "idgen")
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "nothing")


def test_data_for_another_face_model_is_refused(fake_data, tmp_path, default_model):
    """A manifest whose face-model fingerprint differs from the model it names is refused before training."""
    import shutil

    copy = tmp_path / "data"
    shutil.copytree(fake_data, copy)
    manifest = Manifest.load(copy)
    manifest.face_model = dict(manifest.face_model, fingerprint="0" * 64)
    manifest.save(copy)
    with pytest.raises(OferError, match="fingerprint"):
        train("idgen", copy, tmp_path / "run", epochs=1)
    assert not (tmp_path / "run" / "idgen" / "last.pt").exists()


def test_normalizer_round_trip_and_constant_dims():
    x = torch.randn(50, 4)
    x[:, 2] = 5.0
    norm = Normalizer.fit(x)
    assert float(norm.std[2]) == 1.0
    torch.testing.assert_close(norm.inverse(norm(x)), x)
    again = Normalizer.from_dict(norm.to_dict("t"), "t", "here")
    torch.testing.assert_close(again(x), norm(x))


def test_condition_noise_is_a_recorded_training_regulariser(fake_data, tmp_path):
    train("expgen", fake_data, tmp_path / "plain", epochs=2)
    train("expgen", fake_data, tmp_path / "zero", epochs=2, condition_noise=0.0)
    train("expgen", fake_data, tmp_path / "noisy", epochs=2, condition_noise=0.5)
    plain, zero, noisy = (load_checkpoint(tmp_path / r / "expgen") for r in ("plain", "zero", "noisy"))
    assert all(torch.equal(plain.payload["model"][k], zero.payload["model"][k]) for k in plain.payload["model"])
    assert not all(torch.equal(plain.payload["model"][k], noisy.payload["model"][k]) for k in plain.payload["model"])
    assert noisy.config.training["condition_noise"] == 0.5
    with pytest.raises(CheckpointError, match="--condition-noise"):  # defines the network: not on --resume
        train("expgen", fake_data, tmp_path / "noisy", epochs=3, condition_noise=0.25, resume=True)


def test_expgen_on_appearance_alone_ignores_the_identity_embedding(fake_data, tmp_path):
    """``--condition appearance``: ExpGen records only the appearance encoder and OFER feeds it that alone,
    so two identity embeddings with one appearance give the same hypotheses (with the default they differ)."""
    from ofer.methods.base import ReconstructionSettings
    from ofer.methods.ofer import OFER

    with pytest.raises(OferError, match="--domain-directions 0"):
        train("expgen", fake_data, tmp_path / "bad", epochs=1, condition="appearance")
    expressions = {}
    for condition in ("appearance", "identity+appearance"):
        run = tmp_path / condition
        train("expgen", fake_data, run, epochs=2, condition=condition, domain_directions=0)
        train("idgen", fake_data, run, epochs=2, domain_directions=0)
        train("idrank", fake_data, run, epochs=1, domain_directions=0)
        expgen = load_checkpoint(run / "expgen")
        assert list(expgen.config.encoders) == condition.split("+")
        method = OFER.from_run(run)
        assert set(method.encoders) == {"identity", "appearance"}  # the front end still computes both
        identity = torch.nn.functional.normalize(torch.randn(2, 512, generator=torch.Generator().manual_seed(0)), dim=1)
        appearance = torch.randn(1, 16, generator=torch.Generator().manual_seed(1)).repeat(2, 1)
        settings = ReconstructionSettings(shapes=3, expressions=4, steps=5)
        recs = method.reconstruct_embeddings(identity.numpy(), appearance.numpy(), settings, ["same", "same"])
        expressions[condition] = [r.expressions for r in recs]
    assert torch.equal(torch.as_tensor(expressions["appearance"][0]), torch.as_tensor(expressions["appearance"][1]))
    assert not torch.equal(torch.as_tensor(expressions["identity+appearance"][0]),
                           torch.as_tensor(expressions["identity+appearance"][1]))
