"""The synthetic data engine on tiny sizes: determinism, resume, ground truth, protocol rules, preview."""

import shutil

import numpy as np
import pytest
import torch

from ofer.data.occluders import emoji_available
from ofer.data.recipe import close_eyes
from ofer.data.sample import SampleMaker
from ofer.data.shards import Manifest, ShardDataset, read_npz, shard_name, unpack_bits
from ofer.data.synth import SynthConfig, generate, protocol_config, synth_encoders
from ofer.errors import OferError
from ofer.frontend import keypoints5_from_ibug68

pytestmark = pytest.mark.skipif(not emoji_available(), reason="fonts-noto-color-emoji is not installed")


def tiny_config(**overrides):
    return SynthConfig(image_size=160, **overrides)


@pytest.fixture(scope="module")
def train_folder(tmp_path_factory, default_model):
    folder = tmp_path_factory.mktemp("synth") / "train"
    manifest, made = generate(folder, "default", 10, 3, tiny_config(), shard_size=4, progress=False)
    assert made == 3 and manifest.num_shards == 3
    return folder


def test_fields_and_ground_truth(train_folder, default_model):
    data = read_npz(train_folder / shard_name(0))
    assert data["image"].shape == (4, 160, 160, 3) and data["image"].dtype == np.uint8
    assert data["shape"].shape == (4, default_model.shape_dim) and data["expression"].shape == (4, 52)
    assert data["arcface"].shape == (4, 512)
    np.testing.assert_allclose(np.linalg.norm(data["arcface"], axis=1), 1.0, atol=1e-4)
    front = unpack_bits(data["front"], default_model.num_vertices)
    unocc = unpack_bits(data["unoccluded"], default_model.num_vertices)
    assert (unocc <= front).all() and front.sum(1).min() > 500
    assert not front[:, ~default_model.front_mask.numpy()].any()  # only face-region vertices
    assert "image_clean" not in data


def test_resume_skips_and_regenerates_identically(train_folder):
    before = (train_folder / shard_name(1)).read_bytes()
    _, made = generate(train_folder, "default", 10, 3, tiny_config(), shard_size=4, progress=False)
    assert made == 0
    (train_folder / shard_name(1)).unlink()
    _, made = generate(train_folder, "default", 10, 3, tiny_config(), shard_size=4, progress=False)
    assert made == 1 and (train_folder / shard_name(1)).read_bytes() == before
    # a readable shard whose content no longer matches the manifest's checksum is made again
    arrays = read_npz(train_folder / shard_name(1))
    arrays["camera"] = np.zeros_like(arrays["camera"])
    np.savez(train_folder / shard_name(1), **arrays)
    _, made = generate(train_folder, "default", 10, 3, tiny_config(), shard_size=4, progress=False)
    assert made == 1 and (train_folder / shard_name(1)).read_bytes() == before
    with pytest.raises(OferError, match="holds other data"):
        generate(train_folder, "default", 10, 4, tiny_config(), shard_size=4, progress=False)


def test_a_killed_run_leaves_a_manifest_that_refuses_other_settings(tmp_path, monkeypatch):
    """The manifest is written before the first shard: a run killed without cleanup still names its recipe."""
    import ofer.data.synth as synth

    def killed(job):
        assert (job[0] / "manifest.json").is_file()
        raise SystemExit("killed")

    monkeypatch.setattr(synth, "_run_shard", killed)
    with pytest.raises(SystemExit):
        generate(tmp_path / "d", "default", 4, 3, tiny_config(), shard_size=2, progress=False)
    monkeypatch.undo()
    assert Manifest.load(tmp_path / "d").shards == []
    with pytest.raises(OferError, match="holds other data"):
        generate(tmp_path / "d", "default", 4, 5, tiny_config(), shard_size=2, progress=False)


def test_shards_without_a_manifest_are_not_adopted(train_folder, tmp_path):
    import shutil

    orphan = tmp_path / "orphan"
    orphan.mkdir()
    shutil.copy(train_folder / shard_name(0), orphan / shard_name(0))
    with pytest.raises(OferError, match="holds shards but no manifest.json"):
        generate(orphan, "default", 10, 3, tiny_config(), shard_size=4, progress=False)
    assert sorted(p.name for p in orphan.iterdir()) == [shard_name(0)]


def test_dataset_and_manifest(train_folder, default_model):
    manifest = Manifest.load(train_folder)
    assert manifest.encoders == synth_encoders(None)
    assert manifest.encoders["appearance"] == {"name": "mediapipe-blendshapes-landmarks", "dim": 260}
    # the model's full record, fingerprint and load options included, and it passes the one check
    info = default_model.info().to_dict()
    assert manifest.face_model == info and len(manifest.face_model["fingerprint"]) == 64
    manifest.check_face_model(info, train_folder)
    ds = ShardDataset(train_folder, fields=("shape", "arcface", "appearance"))
    assert len(ds) == 10 and ds[9]["shape"].shape[0] == manifest.face_model["shape_dim"]
    assert ds[9]["appearance"].shape == (260,)


@pytest.mark.parametrize("index", [7, 9])
def test_a_sample_depends_only_on_seed_and_index(train_folder, index):
    """Sample ``index`` made alone equals the one made in a shard of 4 (shard index // 4, row index % 4)."""
    stored = read_npz(train_folder / shard_name(index // 4))
    alone = SampleMaker("default", tiny_config()).make_shard(index, 1, 3)
    assert set(alone) == set(stored)
    for key, value in alone.items():
        np.testing.assert_array_equal(value[0], stored[key][index % 4], err_msg=key)


def test_protocol_rules_on_a_small_set(tmp_path, default_model):
    config = protocol_config(image_size=160, identities=3)
    manifest, _ = generate(tmp_path / "p", "default", 9, 545, config, kind="protocol", shard_size=5, progress=False)
    data = ShardDataset(tmp_path / "p").arrays(["front", "unoccluded", "identity", "category", "expression", "shape"])
    front = unpack_bits(data["front"], default_model.num_vertices).sum(1)
    unocc = unpack_bits(data["unoccluded"], default_model.num_vertices).sum(1)
    assert ((unocc > 0) & (unocc < front)).all()
    assert data["identity"].tolist() == [0, 1, 2] * 3
    assert set(data["category"].tolist()) == {0, 1, 2}  # hand, object, random; never none
    assert (data["expression"].max(1) >= 0.3).all()
    assert np.array_equal(data["shape"][0], data["shape"][3])  # same subject, same identity
    again, _ = generate(tmp_path / "q", "default", 9, 545, config, kind="protocol", shard_size=5, progress=False)
    assert again.dataset_checksum() == manifest.dataset_checksum()


def test_preview_draws_a_sheet(train_folder, tmp_path):
    from ofer.data.preview import contact_sheet

    sheet = contact_sheet(train_folder, count=4, columns=2)
    assert sheet.size == (320, 320)


@pytest.mark.parametrize("category", [None, np.nan, 99])
def test_preview_labels_a_missing_or_unknown_occluder_category(train_folder, tmp_path, category):
    from ofer.data.preview import contact_sheet

    folder = tmp_path / "data"
    shutil.copytree(train_folder, folder)
    arrays = read_npz(folder / shard_name(0))
    if category is None:
        del arrays["category"]
    else:
        arrays["category"] = np.full(len(arrays["category"]), category, np.float32)
    np.savez(folder / shard_name(0), **arrays)
    assert contact_sheet(folder, count=2, columns=2).size == (320, 160)


def test_training_refuses_data_with_nan_in_a_field_it_reads(train_folder, tmp_path, capsys):
    from ofer.cli.main import main

    folder = tmp_path / "data"
    shutil.copytree(train_folder, folder)
    arrays = read_npz(folder / shard_name(1))
    arrays["arcface"][2, 7] = np.nan
    np.savez(folder / shard_name(1), **arrays)
    code = main(["train", "idgen", "--data", str(folder), "-o", str(tmp_path / "run"), "--epochs", "1",
                 "--batch", "4", "--widths", "8", "4", "4", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert f"{folder}: damaged data: field 'arcface' holds NaN or infinite values" in err
    assert not (tmp_path / "run" / "idgen" / "last.pt").exists()


def test_keypoints_from_landmarks():
    lmk = np.zeros((68, 2))
    lmk[36:42] = [10, 20]
    lmk[42:48] = [30, 20]
    lmk[30] = [20, 30]
    lmk[48], lmk[54] = [12, 40], [28, 40]
    np.testing.assert_allclose(keypoints5_from_ibug68(lmk), [[10, 20], [30, 20], [20, 30], [12, 40], [28, 40]])


def test_a_recipe_reloaded_from_its_manifest_remakes_the_same_samples():
    """The manifest stores the occluder mix with sorted keys; the category draw must not depend on the order."""
    mix = {"hand": 0.3, "object": 0.35, "random": 0.25, "none": 0.1}
    reordered = dict(sorted(mix.items()))
    assert list(reordered) != list(mix)
    first = SampleMaker("default", tiny_config(occluder_mix=mix))
    second = SampleMaker("default", tiny_config(occluder_mix=reordered))
    assert first.categories == second.categories
    for index in range(4):
        a, b = first.make(index, 5), second.make(index, 5)
        assert a["category"] == b["category"]
        np.testing.assert_array_equal(a["image"], b["image"])


def test_closed_eyes_shut_both_eyes_and_leave_the_other_draws_alone(default_model):
    names = default_model.expression_names
    blink = [names.index("eyeBlinkLeft"), names.index("eyeBlinkRight")]
    plain = SampleMaker("default", tiny_config(neutral_fraction=0.0))
    shut = SampleMaker("default", tiny_config(neutral_fraction=0.0, closed_eyes_fraction=1.0))
    for index in range(3):
        rng, gen = np.random.default_rng(index), torch.Generator().manual_seed(index)
        a = plain.coefficients(rng, gen, index, 0)
        rng, gen = np.random.default_rng(index), torch.Generator().manual_seed(index)
        b = shut.coefficients(rng, gen, index, 0)
        torch.testing.assert_close(a.shape, b.shape)
        assert (b.expression[0, blink] >= 0.6).all()
        others = [i for i in range(len(names)) if i not in blink]
        torch.testing.assert_close(a.expression[0, others], b.expression[0, others])


def test_closed_eyes_leave_a_model_without_eyelid_blendshapes_unchanged():
    class Pca:
        expression_prior, expression_names = "gaussian", None
    expression = torch.randn(2, 5)
    assert close_eyes(Pca(), expression, np.random.default_rng(0)) is expression
