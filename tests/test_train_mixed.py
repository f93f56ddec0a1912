"""``ofer train NAME --data A B [--data-weights ...]``: renders plus photo-domain data as one data set.

The photo folder here is fake (no photo is generated): a manifest of kind ``photo`` over arrays
like a render folder's, with the photo engine's extra fields and ArcFace embeddings that share a
component of their own, so that directions fitted on all samples differ from the render ones.
"""

import json
import shutil

import numpy as np
import pytest
import torch

from ofer import training
from ofer.cli.main import build_parser, main
from ofer.data.shards import Manifest, ShardRecord, arrays_checksum, shard_name, write_npz
from ofer.errors import CheckpointError, InputError, OferError
from ofer.frontend.landmarker import BLENDSHAPE_NAMES
from ofer.networks.normalization import ConditionNormalizer, domain_directions
from ofer.runs import load_checkpoint
from ofer.training.common import TrainingData
from ofer.training.idrank import pick_images
from ofer.training.loop import EpochMix, epoch_batches
from test_training import ENCODERS, make_fake_data

SMALL = dict(epochs=1, batch_size=32, lr=2e-3, seed=1, progress=False, widths=[32, 16])
RANK = dict(epochs=1, batch_size=4, seed=1, progress=False, candidates=4, rank_images=16, rank_steps=2,
            rank_vertices=16, widths=[32, 16])


def make_fake_photo_data(folder, model, n=32, seed=7, shard_size=16):
    """A folder of kind ``photo`` in the shard format: pseudo-label shapes and expressions, embeddings
    with a strong common component (as photos' differ from renders'), ``identity`` = face index."""
    info = model.info().to_dict()
    manifest = Manifest("photo", "ofer-photo/test", info, seed, n, shard_size, {"variants": 2}, encoders=ENCODERS)
    g = torch.Generator().manual_seed(seed)
    prior = model.sample_prior(n, g, expression=True)
    common = torch.nn.functional.normalize(torch.randn(512, generator=g), dim=0)
    arc = prior.shape @ torch.randn(model.shape_dim, 512, generator=g)
    arc = torch.nn.functional.normalize(torch.nn.functional.normalize(arc, dim=1) + 2.0 * common, dim=1)
    app = prior.expression @ torch.randn(model.expression_dim, 16, generator=g)
    for i in range(manifest.num_shards):
        s, c = manifest.shard_range(i)
        arrays = {"shape": prior.shape[s:s + c].numpy(), "expression": prior.expression[s:s + c].numpy(),
                  "arcface": arc[s:s + c].numpy(), "appearance": app[s:s + c].numpy(),
                  "identity": (torch.arange(s, s + c, dtype=torch.int32) // 2).numpy(),
                  "fit_error": torch.rand(c, generator=g).numpy(),
                  "blendshapes": torch.rand(c, 52, generator=g).numpy()}
        write_npz(folder / shard_name(i), arrays)
        manifest.shards.append(ShardRecord(shard_name(i), s, c, arrays_checksum(arrays)))
    manifest.save(folder)
    return folder


@pytest.fixture(scope="module")
def renders(tmp_path_factory, default_model):
    return make_fake_data(tmp_path_factory.mktemp("renders"), default_model, n=64)


@pytest.fixture(scope="module")
def photos(tmp_path_factory, default_model):
    return make_fake_photo_data(tmp_path_factory.mktemp("photos"), default_model)


def edited_copy(folder, target, **changes):
    """A copy of ``folder`` whose manifest has ``changes`` (e.g. other encoders)."""
    shutil.copytree(folder, target)
    manifest = Manifest.load(target)
    for key, value in changes.items():
        setattr(manifest, key, value)
    manifest.save(target)
    return target


def test_mixed_idgen_and_expgen_train_and_record_every_folder(renders, photos, tmp_path):
    for network in ("idgen", "expgen"):
        log = training.train(network, data=[renders, photos], run=tmp_path, **SMALL)
        assert len(log) == 1 and log[0]["loss"] > 0
        data = load_checkpoint(tmp_path / network, network).config.data
        assert data["num_samples"] == 96 and data["path"] == str(renders)
        assert [(f["kind"], f["num_samples"]) for f in data["folders"]] == [("train", 64), ("photo", 32)]
        assert [f["checksum"] for f in data["folders"]] == [Manifest.load(f).dataset_checksum()
                                                           for f in (renders, photos)]
        assert "weight" not in data["folders"][0]


def test_photo_expression_mediapipe_takes_the_blendshape_scores_of_photo_rows_by_name(renders, photos, tmp_path):
    data = TrainingData.open([renders, photos]).read(["expression"])
    fit = data.columns["expression"]
    mixed = data.photo_blendshape_expressions(fit)
    scores = torch.from_numpy(TrainingData.open([photos]).parts[0].dataset.arrays(["blendshapes"])["blendshapes"])
    names = data.face_model.expression_names
    smile, tongue = names.index("mouthSmileLeft"), names.index("tongueOut")
    assert torch.equal(mixed[:64], fit[:64])  # render rows keep their exact labels
    assert torch.equal(mixed[64:, smile], scores[:, BLENDSHAPE_NAMES.index("mouthSmileLeft")])
    assert torch.equal(mixed[64:, tongue], fit[64:, tongue])  # MediaPipe has no tongueOut
    training.train("expgen", data=[renders, photos], run=tmp_path, photo_expression="mediapipe", **SMALL)
    assert load_checkpoint(tmp_path / "expgen", "expgen").config.training["photo_expression"] == "mediapipe"


def test_photo_expression_mediapipe_needs_blendshapes_and_arkit_names(renders, tmp_path, default_model):
    bare = make_fake_photo_data(tmp_path / "bare", default_model)
    for shard in bare.glob("*.npz"):
        arrays = dict(np.load(shard))
        del arrays["blendshapes"]
        write_npz(shard, arrays)
    data = TrainingData.open([renders, bare])
    with pytest.raises(InputError, match="no MediaPipe blendshapes for --photo-expression mediapipe"):
        data.photo_blendshape_expressions(torch.zeros(data.num_samples, default_model.expression_dim))
    arkit = list(data.face_model.expression_names)
    data.face_model.expression_names = [f"expr{i:03d}" for i in range(default_model.expression_dim)]
    try:
        with pytest.raises(InputError, match="needs a face model with ARKit-named expressions"):
            data.photo_blendshape_expressions(torch.zeros(data.num_samples, default_model.expression_dim))
    finally:
        data.face_model.expression_names = arkit


def test_weighted_mix_of_idrank_and_regressor(renders, photos, tmp_path):
    training.train("idgen", data=[renders, photos], run=tmp_path, data_weights=[0.5, 0.5], **SMALL)
    training.train("idrank", data=[renders, photos], run=tmp_path, data_weights=[0.5, 0.5], **RANK)
    config = load_checkpoint(tmp_path / "idrank", "idrank").config
    assert [f["weight"] for f in config.data["folders"]] == [0.5, 0.5]
    assert config.extra["images"] == 16  # 8 renders + 8 photos
    training.train("regressor", data=[photos, renders], run=tmp_path, data_weights=[3, 7],
                   **dict(SMALL, widths=[32]))


def test_epoch_mix_shares_repeats_and_subsamples():
    mix = EpochMix.from_weights([64, 32], [0.5, 0.5])
    assert mix.quotas == (48, 48) and mix.num_samples == 96
    assert EpochMix.from_weights([64, 32], [0.7, 0.3]).quotas == (67, 29)
    assert EpochMix.from_weights([10, 0, 5], [1, 1, 1]).quotas == (8, 0, 7)  # an empty folder draws nothing
    order = torch.cat(list(epoch_batches(96, 32, seed=3, epoch=1, mix=mix)))
    counts = torch.bincount(order, minlength=96)
    assert len(order) == 96 and set(counts[64:].tolist()) <= {1, 2} and int(counts[64:].sum()) == 48
    assert set(counts[:64].tolist()) <= {0, 1} and int(counts[:64].sum()) == 48  # subsampled, each once at most
    again = torch.cat(list(epoch_batches(96, 32, seed=3, epoch=1, mix=mix)))
    assert torch.equal(order, again)  # reproducible per (seed, epoch): exact resume


def test_idrank_picks_each_folder_by_its_share(renders, photos):
    data = TrainingData.open([renders, photos], [0.25, 0.75])
    picks = pick_images(data, 40, seed=0)
    assert data.rows_per_folder(picks) == [10, 30] and torch.equal(picks, picks.sort().values)
    plain = TrainingData.open([renders, photos])
    generator = torch.Generator().manual_seed(0)
    assert torch.equal(pick_images(plain, 40, 0), torch.randperm(96, generator=generator)[:40].sort().values)


def test_domain_directions_are_fitted_on_render_samples_only(renders, photos):
    data = TrainingData.open([renders, photos]).read(["arcface"])
    cond = data.columns["arcface"]
    norm = data.condition_normalizer(cond, 2)
    torch.testing.assert_close(norm.directions, domain_directions(cond[:64], 2), rtol=0, atol=0)
    assert not torch.allclose(norm.directions, domain_directions(cond, 2), atol=1e-3)  # photos would move them
    torch.testing.assert_close(norm.norm.mean, norm.project(cond).mean(0))  # statistics over all samples
    assert data.record()["folders"][1]["kind"] == "photo"
    # IdRank's conditions are a subset of rows: only those from renders give the directions
    rows = torch.tensor([0, 5, 9, 70, 80, 90])
    subset = data.condition_normalizer(cond[rows], 2, rows=rows)
    torch.testing.assert_close(subset.directions, domain_directions(cond[rows[:3]], 2), rtol=0, atol=0)
    with pytest.raises(InputError, match="none of the 3 training conditions comes from a render folder"):
        data.condition_normalizer(cond[rows[3:]], 2, rows=rows[3:])


def test_single_render_folder_gives_the_normalizer_of_before(renders, tmp_path):
    """One render folder: the normaliser is the one fitted on all conditions, as before mixing."""
    training.train("expgen", data=renders, run=tmp_path, **SMALL)
    config = load_checkpoint(tmp_path / "expgen", "expgen").config
    columns = TrainingData.open(renders).read(["arcface", "appearance"]).columns
    before = ConditionNormalizer.fit(torch.cat([columns["arcface"], columns["appearance"]], 1), 512, 2).to_dict()
    saved = {k: v for k, v in config.normalization.items() if k.startswith("cond")}
    assert json.dumps(saved, sort_keys=True) == json.dumps(before, sort_keys=True)
    assert config.data["checksum"] == Manifest.load(renders).dataset_checksum()  # old runs resume


def test_photo_only_data_needs_no_domain_directions(photos, tmp_path, capsys):
    code = main(["train", "idgen", "--data", str(photos), "-o", str(tmp_path / "run"), "--epochs", "1", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "--domain-directions 2 are fitted on render data" in err and "--domain-directions 0" in err
    assert not (tmp_path / "run").exists()
    training.train("idgen", data=[photos], run=tmp_path / "ok", domain_directions=0, **SMALL)
    normalization = load_checkpoint(tmp_path / "ok" / "idgen").config.normalization
    assert normalization["cond_domain_directions"] == []


@pytest.mark.parametrize("changes, message", [
    ({"encoders": {**ENCODERS, "identity": {"name": "other-arcface", "dim": 512}}},
     "have different identity encoders (arc/512 vs other-arcface/512)"),
    ({"encoders": {"identity": ENCODERS["identity"]}}, "have different appearance encoders (app/16 vs none)"),
    ("fingerprint", "were made for different face models (fingerprint "),
    ("shape_dim", "were made for different face models (shape_dim 106 vs 100"),
])
def test_folders_of_other_encoders_or_face_models_are_refused(renders, photos, tmp_path, capsys, changes, message):
    if isinstance(changes, str):
        face_model = dict(Manifest.load(photos).face_model)
        face_model.update(fingerprint="0" * 64) if changes == "fingerprint" else face_model.update(shape_dim=100)
        changes = {"face_model": face_model}
    other = edited_copy(photos, tmp_path / "other", **changes)
    code = main(["train", "expgen", "--data", str(renders), str(other), "-o", str(tmp_path / "run"),
                 "--epochs", "1", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith(f"ofer: error: --data {renders} and {other} ") and message in err
    assert not (tmp_path / "run").exists()


def test_resume_refuses_a_changed_data_list(renders, photos, tmp_path, capsys):
    run = tmp_path / "run"
    training.train("idgen", data=[renders, photos], run=run, **SMALL)
    for data, weights in (([renders], None), ([photos, renders], None), ([renders, photos], [0.7, 0.3])):
        with pytest.raises(CheckpointError, match="--resume cannot change --data or --data-weights: the run was "
                                                  "trained on .* \\(train, 64 samples"):
            training.train("idgen", data=data, run=run, resume=True, data_weights=weights, **dict(SMALL, epochs=2))
    code = main(["train", "idgen", "--data", str(renders), "-o", str(run), "--epochs", "2", "--batch", "32",
                 "--lr", "0.002", "--seed", "1", "--widths", "32", "16", "--resume", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "cannot change --data" in err
    log = training.train("idgen", data=[renders, photos], run=run, resume=True, **dict(SMALL, epochs=2))
    assert [r["epoch"] for r in log] == [1, 2]


def test_cli_data_list_and_weights(tmp_path, capsys):
    args = build_parser().parse_args(["train", "idgen", "--data", "a", "b", "--data-weights", "0.7", "0.3",
                                      "-o", "r"])
    assert [str(p) for p in args.data] == ["a", "b"] and args.data_weights == [0.7, 0.3]
    for extra, message in ((["--data-weights", "1"], "one weight per --data folder (2 folder(s), got 1)"),
                           (["--data-weights", "1", "0"], "--data-weights must be a positive number")):
        code = main(["train", "idgen", "--data", "a", "b", "-o", str(tmp_path / "run"), *extra])
        err = capsys.readouterr().err.strip()
        assert code == 2 and message in err and len(err.splitlines()) == 1
    assert training.IdGenOptions(data="d", run="r").data == [__import__("pathlib").Path("d")]
    with pytest.raises(OferError, match="--data must name one or more data folders"):
        training.IdGenOptions(data=[], run="r")
