"""`ofer eval photodata` on a hand-made photo folder (no generator, no MediaPipe, no /work/data).

The folder is written directly with the shards helpers, as ``ofer synth photo`` lays it out: 3
faces x 2 occluded copies, prior coefficients of the default head as pseudo-labels (the copies of
a face share them), random embeddings and pixels, visibility masks chosen per record.
"""

import json
from typing import ClassVar

import numpy as np
import pytest
import torch

from ofer.cli.main import main
from ofer.data.shards import Manifest, ShardRecord, arrays_checksum, pack_bits, shard_name, write_npz
from ofer.errors import InputError
from ofer.evaluation import photodata as PD
from ofer.evaluation import protocol as P
from ofer.evaluation.ranking import ranking_table
from ofer.methods.base import Hypotheses, ReconstructionSettings, make_reconstruction
from ofer.methods.registry import register
from test_eval_protocol import FakeMethod

ENCODERS = {"identity": {"name": "fake-id", "dim": 4}, "appearance": {"name": "fake-app", "dim": 3}}
FACES, VARIANTS = 3, 2
RECORDS = FACES * VARIANTS
_MODEL = {}
_LABELS = {}  # the folder's pseudo-labels, for the method that returns them


def _model():
    from ofer import load_face_model

    if "m" not in _MODEL:
        _MODEL["m"] = load_face_model("default")
    return _MODEL["m"]


def photo_arrays(encoders=ENCODERS, seed=0):
    model = _model()
    rng = np.random.default_rng(seed)
    sample = model.sample_prior(FACES, torch.Generator().manual_seed(seed + 1), expression=True)
    repeat = lambda x: np.repeat(np.asarray(x), VARIANTS, 0)
    front = np.repeat(model.front_mask.numpy()[None], RECORDS, 0)
    unoccluded = front & (rng.random(front.shape) < 0.6)
    unoccluded[0] = front[0]  # record 0: nothing occluded
    dims = {role: encoders.get(role, {}).get("dim", 2) for role in ("identity", "appearance")}
    return {
        "shape": repeat(sample.shape.numpy()), "expression": repeat(sample.expression.numpy()),
        "arcface": rng.normal(size=(RECORDS, dims["identity"])).astype(np.float32),
        "appearance": rng.normal(size=(RECORDS, dims["appearance"])).astype(np.float32),
        "front": pack_bits(front), "unoccluded": pack_bits(unoccluded),
        "identity": np.repeat(np.arange(FACES, dtype=np.int32), VARIANTS),
        "variant": np.tile(np.arange(VARIANTS, dtype=np.int8), FACES),
        "category": np.array([3, 0, 1, 0, 2, 1], np.int8),  # none, hand, object, hand, random, object
        "image": rng.integers(0, 255, (RECORDS, 16, 16, 3), dtype=np.uint8),
    }


def write_folder(folder, arrays, kind="photo", encoders=ENCODERS, shard_size=VARIANTS * 2):
    folder.mkdir(parents=True, exist_ok=True)
    records = []
    for index, start in enumerate(range(0, len(arrays["shape"]), shard_size)):
        part = {k: v[start : start + shard_size] for k, v in arrays.items()}
        write_npz(folder / shard_name(index), part)
        records.append(ShardRecord(shard_name(index), start, len(part["shape"]), arrays_checksum(part)))
    Manifest(kind=kind, generator_version="test", face_model=_model().info().to_dict(), seed=9,
             num_samples=len(arrays["shape"]), shard_size=shard_size, config={"variants": VARIANTS},
             encoders=encoders, shards=records).save(folder)
    return folder


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    arrays = photo_arrays()
    _LABELS.update(arrays)
    return write_folder(tmp_path_factory.mktemp("photo"), arrays)


@register
class RankingFake(FakeMethod):
    """test_eval_protocol's fake (prior samples seeded by (seed, key), random scores) under another name."""

    name = "test-photodata-fake"


@register
class TruthFake(RankingFake):
    """Returns the record's own pseudo-labels (one hypothesis): every error is 0."""

    name = "test-photodata-truth"
    label = "truth"
    encoders: ClassVar[dict] = {}

    def reconstruct_embeddings(self, identity, appearance, settings, keys):
        model, out = self.face_model, []
        for key in keys:
            shape = torch.from_numpy(_LABELS["shape"][int(key)][None])
            code = torch.from_numpy(_LABELS["expression"][int(key)][None])
            out.append(make_reconstruction(model, self.name, str(key), shape, torch.zeros(1), 0, code))
        return out


@register
class ImageFake(RankingFake):
    """Needs images, like ``fit``: one hypothesis, and no face found on odd records."""

    name = "test-photodata-image"
    label = "image fake"
    encoders: ClassVar[dict] = {}
    needs_images = True

    def reconstruct(self, images, settings=None, names=None, place=True):
        (image,), (name,) = images, names
        assert image.shape == (16, 16, 3) and image.dtype == np.uint8
        if int(name) % 2:
            return [InputError(f"{name}: no face found")]
        return self.reconstruct_embeddings(None, None, settings.replace(shapes=1, expressions=1), [name])


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def photodata(folder, output, *extra):
    return ["eval", "photodata", "--data", folder, "--shapes", 5, "--samples", 3, "-o", output, *extra]


def test_ranker_share_of_the_gap_by_hand():
    assert PD.gap_share(average=5.0, ranked=4.0, oracle=3.0) == pytest.approx(0.5)
    assert PD.gap_share(average=5.0, ranked=5.5, oracle=3.0) == pytest.approx(-0.25)  # worse than a random pick
    assert np.isnan(PD.gap_share(average=3.0, ranked=3.0, oracle=3.0))  # no gap
    # two records x 3 samples: ranked picks errors 4 and 2 (mean 3), oracle 3 and 2 (2.5), average 4 and 4 (4)
    errors = np.array([[3.0, 5.0, 4.0], [2.0, 6.0, 4.0], [np.nan, np.nan, np.nan]])
    scores = np.array([[0.0, 1.0, 2.0], [3.0, 0.0, 0.0], [np.nan, np.nan, np.nan]])
    rows = {"identity_errors": errors, "scores": scores, "failed": np.array([False, False, True]),
            "category": np.array([0, 0, 0]), "identity": np.array([0, 0, 1]),
            **{k: np.array([1.0, 2.0, np.nan]) for k in PD.SUMMARY_KEYS}}
    summary = PD.summarise(rows)
    assert summary["ranking"]["gap_closed"] == pytest.approx((4 - 3) / (4 - 2.5))  # the failed record left out
    assert summary["ranking"]["num_rows"] == 2 and summary["failed"] == 1 and summary["records"] == 3
    assert summary["identity_ranked"] == pytest.approx(1.5) and summary["counts"]["identity_ranked"] == 2
    assert summary["categories"]["hand"]["ranking"]["gap_closed"] == pytest.approx(2 / 3)


def test_identity_is_similarity_aligned_and_the_same_code_as_co545():
    model = _model()
    g = torch.Generator().manual_seed(3)
    shapes = model.sample_prior(6, g).shape.numpy().reshape(2, 3, -1)
    truth = P.neutral_meshes(model, shapes[:, 1])[0]  # sample 1 of each image is right up to a similarity
    rotation = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    moved = 1.1 * truth @ rotation.T + np.array([5.0, -2.0, 30.0])
    h = Hypotheses(shapes=shapes, scores=np.array([[0, 0, 1.0], [0, 1.0, 0]]), chosen=np.array([2, 1]),
                   meshes=np.zeros((2, 1, model.num_vertices, 3)))
    aligned = P.identity_metrics(h, moved, model, align=True)
    assert np.allclose(aligned["identity_errors"][:, 1], 0, atol=1e-3)
    assert aligned["identity_oracle"] == pytest.approx([0, 0], abs=1e-3)
    assert aligned["identity_ranked"][1] == pytest.approx(0, abs=1e-3) and aligned["identity_ranked"][0] > 0.1
    plain = P.identity_metrics(h, truth, model)  # the co545 default: no alignment, exact on the truth itself
    assert np.allclose(plain["identity_errors"][:, 1], 0, atol=1e-3)
    assert (P.identity_metrics(h, moved, model)["identity_oracle"] > 10).all()


def test_photodata_end_to_end(photos, tmp_path, capsys):
    out = tmp_path / "report"
    methods = ("prior", "test-photodata-fake", "test-photodata-truth", "test-photodata-image")
    argv = photodata(photos, out, *[a for m in methods for a in ("--method", m)])
    code, text, err = run(capsys, *argv)
    assert code == 0, err
    assert {"report.md", "metrics.json"} <= {p.name for p in out.iterdir()}
    assert not [p for p in out.rglob("*") if ".tmp" in p.name]
    report = json.loads((out / "metrics.json").read_text())
    results = report["methods"]
    assert set(results) == {"random prior", "fake", "truth", "image fake"}
    assert report["settings"]["methods"] == list(methods) and report["settings"]["shapes"] == 5
    for summary in results.values():
        assert summary["records"] == RECORDS and summary["faces"] == FACES
        assert set(summary["categories"]) == {"hand", "object", "random", "none"}
        assert summary["categories"]["hand"]["records"] == 2
        # record 0 has no occluded vertex: left out of the occluded-vertex means
        if summary["failed"] == 0:
            assert summary["counts"]["expr_se_occ"] == RECORDS - 1 and summary["counts"]["expr_se_vis"] == RECORDS
    # the pseudo-labels themselves: no identity or expression error
    truth = results["truth"]
    for key in PD.SUMMARY_KEYS:
        assert truth[key] == pytest.approx(0, abs=1e-3), key
    assert truth["ranking"] is None  # one sample: nothing ranked
    fake = results["fake"]
    assert fake["identity_oracle"] <= fake["identity_ranked"] and fake["identity_oracle"] <= fake["identity_average"]
    assert fake["expr_cse_vis"] <= fake["expr_se_vis"] and fake["ranking"]["num_candidates"] == 5
    gap = fake["ranking"]
    assert gap["gap_closed"] == pytest.approx(PD.gap_share(fake["identity_average"], fake["identity_ranked"],
                                                           fake["identity_oracle"]))
    assert results["random prior"]["ranking"] is None  # equal scores: not a ranker
    # a method needing images: the odd records are failures, counted and left out of its means
    image = results["image fake"]
    assert image["failed"] == RECORDS // 2 and image["counts"]["identity_ranked"] == RECORDS // 2
    assert "no face found on 3 of 6 records" in text
    markdown = (out / "report.md").read_text()
    for where in (text, markdown):
        assert "| fake |" in where and "| truth |" in where and "| image fake | hand |" in where
        assert "ranker's share of gap" in where and "(n=5 of 6)" in where
    assert "Ranking (fake, 5 identity samples, 6 records)" in markdown
    # deterministic: a second folder gives the same numbers; the same folder reuses its cache
    again = tmp_path / "again"
    assert run(capsys, *photodata(photos, again, *[a for m in methods for a in ("--method", m)]))[0] == 0
    assert json.loads((again / "metrics.json").read_text())["methods"] == results
    chunk = next((out / "cache" / "fake").glob("chunk_*.npz"))
    stamp = chunk.stat().st_mtime_ns
    assert run(capsys, *argv)[0] == 0 and chunk.stat().st_mtime_ns == stamp
    # --limit: the first records only
    code, _, err = run(capsys, *photodata(photos, tmp_path / "limited", "--method", "test-photodata-fake",
                                          "--limit", 2))
    assert code == 0, err
    limited = json.loads((tmp_path / "limited" / "metrics.json").read_text())["methods"]["fake"]
    assert limited["records"] == 2 and limited["faces"] == 1


def test_shipped_ofer_runs_on_a_photo_folder(tmp_path, capsys):
    from ofer.errors import CheckpointError
    from ofer.methods import OFER
    from ofer.weights import default_run

    try:
        method = OFER.from_run(default_run())
    except CheckpointError:
        pytest.skip("no weights shipped in this checkout")
    folder = write_folder(tmp_path / "photo", photo_arrays(method.encoders), encoders=method.encoders)
    out = tmp_path / "report"
    code, text, err = run(capsys, *photodata(folder, out, "--method", "ofer", "--method", "prior", "--steps", 5))
    assert code == 0, err
    ofer = json.loads((out / "metrics.json").read_text())["methods"]["OFER"]
    assert ofer["records"] == RECORDS and ofer["failed"] == 0 and ofer["ranking"]["num_candidates"] == 5
    assert ofer["identity_oracle"] <= ofer["identity_ranked"] and np.isfinite(ofer["expr_se_front"])
    assert "| OFER |" in text


def test_wrong_folder_or_mismatched_method_fails_in_one_line(photos, tmp_path, capsys):
    import shutil

    (tmp_path / "empty").mkdir()
    train = write_folder(tmp_path / "train", {k: v for k, v in photo_arrays().items()}, kind="train")
    cases = [(tmp_path / "missing", "no such folder"), (tmp_path / "empty", "not a data folder (no manifest.json)"),
             (train, "not a photo folder (kind 'train'); use ofer synth photo")]
    for folder, message in cases:
        code, _, err = run(capsys, *photodata(folder, tmp_path / "out", "--method", "prior"))
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out").exists()
    # a method whose encoders differ from the folder's
    other = tmp_path / "other"
    shutil.copytree(photos, other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["encoders"]["identity"] = {"name": "arcface", "dim": 512}
    (other / "manifest.json").write_text(json.dumps(manifest))
    code, _, err = run(capsys, *photodata(other, tmp_path / "a", "--method", "test-photodata-fake"))
    assert code == 2 and "identity encoder" in err and len(err.strip().splitlines()) == 1
    # ... or whose face model differs
    manifest["face_model"]["fingerprint"] = "0" * 64
    (other / "manifest.json").write_text(json.dumps(manifest))
    code, _, err = run(capsys, *photodata(other, tmp_path / "b", "--method", "prior"))
    assert code == 2 and "fingerprint" in err and len(err.strip().splitlines()) == 1
    # bad options, before any work
    code, _, err = run(capsys, *photodata(photos, tmp_path / "c", "--method", "prior", "--limit", 0))
    assert code == 2 and "--limit must be an integer >= 1" in err
    assert not (tmp_path / "c").exists()


def test_ranking_table_is_what_the_summary_reports(photos, tmp_path):
    """The summary's ranking is ranking_table on the records reconstructed (one code path with co545)."""
    folder = PD.load_photo_set(photos)
    settings = ReconstructionSettings(shapes=4, expressions=2, seed=3)
    rows = PD.evaluate_photodata(RankingFake(), folder, settings, tmp_path / "cache", progress=False)
    table = ranking_table(rows["identity_errors"], rows["scores"])
    assert PD.summarise(rows)["ranking"] == table
    assert rows["identity_ranked"] == pytest.approx(rows["identity_errors"][np.arange(RECORDS), rows["chosen"]])
