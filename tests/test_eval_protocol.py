"""`ofer eval co545|rank|shape` on a hand-made protocol folder with fake registered methods.

The protocol is written directly (no rendering): prior coefficients of the default head, random
embeddings, and visibility masks chosen per image (image 0 has no occluded vertex).
"""

import json
import math
from typing import ClassVar

import numpy as np
import pytest
import torch

import ofer.evaluation.protocol as P
from ofer.cli.main import main
from ofer.data.recipe import protocol_config
from ofer.data.shards import Manifest, ShardRecord, arrays_checksum, pack_bits, shard_name, write_npz
from ofer.evaluation import metrics as M
from ofer.evaluation.reference import REFERENCE_SEED, folder_reference, load_reference, prior_coefficients
from ofer.methods.base import Hypotheses, Method, ReconstructionSettings, image_generator, make_reconstruction
from ofer.methods.registry import register

ENCODERS = {"identity": {"name": "fake-id", "dim": 4}, "appearance": {"name": "fake-app", "dim": 3}}
IMAGES = 6
_MODEL = {}


def _model():
    from ofer import load_face_model

    if "m" not in _MODEL:
        _MODEL["m"] = load_face_model("default")
    return _MODEL["m"]


@register
class FakeMethod(Method):
    """Prior samples seeded by (seed, key), scores from the same generator: ranks, several hypotheses."""

    name = "test-eval-fake"
    label = "fake"
    encoders: ClassVar[dict] = {"identity": ENCODERS["identity"]}

    def __init__(self):
        self.face_model = _model()

    @classmethod
    def from_run(cls, run=None, face_model=None, device="cpu"):
        return cls()

    def reconstruct_embeddings(self, identity, appearance, settings, keys):
        model, out = self.face_model, []
        for key in keys:
            g = image_generator(settings.seed, key, "fake")
            shapes = model.sample_prior(settings.shapes, g).shape
            scores = torch.randn(settings.shapes, generator=g)
            sample = model.sample_prior(settings.expressions, g, expression=True)
            codes = model.join_code(sample.expression, sample.pose)
            out.append(make_reconstruction(model, self.name, str(key), shapes, scores, int(scores.argmax()), codes))
        return out


@register
class SingleMethod(FakeMethod):
    """One hypothesis, one identity: diversity metrics are undefined, nothing is ranked."""

    name = "test-eval-single"
    label = "single"
    encoders: ClassVar[dict] = {}

    def hypotheses(self, identity, appearance, settings, keys):
        return super().hypotheses(identity, appearance, settings.replace(shapes=1, expressions=1), keys)


def write_folder(folder, kind, arrays, shard_size=4, encoders=ENCODERS, face_model=None):
    count = len(arrays["shape"])
    records = []
    for index, start in enumerate(range(0, count, shard_size)):
        part = {k: v[start : start + shard_size] for k, v in arrays.items()}
        write_npz(folder / shard_name(index), part)
        records.append(ShardRecord(shard_name(index), start, len(part["shape"]), arrays_checksum(part)))
    info = face_model or _model().info().to_dict()
    Manifest(kind=kind, generator_version="test", face_model=info, seed=0, num_samples=count, shard_size=shard_size,
             config=protocol_config().to_dict() if kind == "protocol" else {}, encoders=encoders,
             shards=records).save(folder)
    return folder


def coefficients(count, seed):
    model = _model()
    sample = model.sample_prior(count, torch.Generator().manual_seed(seed), expression=True)
    return sample.shape.numpy(), sample.expression.numpy()


@pytest.fixture(scope="module")
def protocol(tmp_path_factory):
    model = _model()
    rng = np.random.default_rng(0)
    front_mask = model.front_mask.numpy()
    shape, expression = coefficients(IMAGES, 1)
    front = np.repeat(front_mask[None], IMAGES, 0)
    unoccluded = front & (rng.random(front.shape) < 0.6)
    unoccluded[0] = front[0]  # image 0: nothing occluded
    arrays = {
        "shape": shape, "expression": expression,
        "arcface": rng.normal(size=(IMAGES, 4)).astype(np.float32),
        "appearance": rng.normal(size=(IMAGES, 3)).astype(np.float32),
        "front": pack_bits(front), "unoccluded": pack_bits(unoccluded),
        "identity": np.arange(IMAGES, dtype=np.int32) % 3, "category": np.zeros(IMAGES, np.int8),
        "image": rng.integers(0, 255, (IMAGES, 24, 24, 3), dtype=np.uint8),
    }
    return write_folder(tmp_path_factory.mktemp("protocol"), "protocol", arrays)


@pytest.fixture(scope="module")
def heldout(tmp_path_factory):
    shape, expression = coefficients(10, 2)
    return write_folder(tmp_path_factory.mktemp("heldout"), "train", {"shape": shape, "expression": expression})


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def co545(protocol, output, *extra):
    return ["eval", "co545", "--data", protocol, "--shapes", 4, "--samples", 3, "-o", output,
            "--reference-samples", 300, *extra]


def test_co545_counts_the_images_a_metric_is_undefined_for(protocol, tmp_path, capsys):
    out = tmp_path / "report"
    code, text, err = run(capsys, *co545(protocol, out, "--method", "test-eval-fake", "--method", "test-eval-single"))
    assert code == 0, err
    report = json.loads((out / "metrics.json").read_text())
    fake, single = report["methods"]["fake"], report["methods"]["single"]
    assert fake["images"] == single["images"] == IMAGES
    # image 0 has no occluded vertex: ASD-O, ODE-O and spread occ leave it out instead of averaging in a 0
    assert fake["counts"]["asd_o"] == fake["counts"]["ode_o"] == fake["counts"]["std_occ"] == IMAGES - 1
    assert fake["counts"]["se_vis"] == fake["counts"]["ode"] == fake["counts"]["min_asd_v"] == IMAGES
    assert fake["asd_o"] > 0 and fake["std_vis"] > 0
    # one hypothesis: every diversity metric is undefined (null, not 0), fidelity is not
    for key in ("min_asd_v", "max_asd_v", "asd_o", "std_vis", "std_occ"):
        assert single[key] is None and single["counts"][key] == 0
    assert single["counts"]["se_vis"] == IMAGES and single["se_vis"] == pytest.approx(single["cse_vis"])
    # the ranking summary covers the methods that rank only
    assert set(report["ranking"]) == {"fake"} and report["reference"]["source"] == "prior"
    assert report["reference"]["samples"] == 300
    assert report["reference"]["seed"] == REFERENCE_SEED and report["settings"]["methods"] == [
        "test-eval-fake", "test-eval-single"]
    for where in (text, (out / "report.md").read_text()):
        assert f"(n={IMAGES - 1} of {IMAGES})" in where and f"n/a (n=0 of {IMAGES})" in where
        assert "| fake |" in where and "| single |" in where and "| SE vis |" in where
    assert "Ranking (fake, 4 identity samples)" in (out / "report.md").read_text()
    assert {"cdf.png", "vertex_error.png", "worst.png"} <= {p.name for p in out.iterdir()}
    assert not [p for p in out.rglob("*") if ".tmp" in p.name]


def test_results_do_not_depend_on_chunking_or_limit(protocol, tmp_path, monkeypatch):
    method = FakeMethod()
    proto = P.load_protocol(protocol)
    settings = ReconstructionSettings(shapes=4, expressions=3, steps=5, seed=7)
    gaussian = M.VertexGaussian.fit(P.ground_truth(method.face_model, proto.data, np.arange(IMAGES))[0])
    full = P.evaluate_method(method, proto, settings, gaussian, tmp_path / "a", progress=False)
    monkeypatch.setattr(P, "CHUNK", 2)
    part = P.evaluate_method(method, proto, settings, gaussian, tmp_path / "b", limit=3, progress=False)
    chunks = sorted(p.name for p in (tmp_path / "b").glob("chunk_*"))
    assert chunks == ["chunk_00000_00002.npz", "chunk_00002_00003.npz"]
    for key in ("se_vis", "cse_front", "asd_o", "ode", "std_vis", "identity_ranked", "scores"):
        # equal up to float32 rounding of batched face-model calls
        assert np.allclose(part[key], full[key][:3], rtol=1e-5, atol=1e-6, equal_nan=True), key
    # a larger limit reuses the finished chunks
    stamp = (tmp_path / "b" / "chunk_00000_00002.npz").stat().st_mtime_ns
    more = P.evaluate_method(method, proto, settings, gaussian, tmp_path / "b", limit=5, progress=False)
    assert (tmp_path / "b" / "chunk_00000_00002.npz").stat().st_mtime_ns == stamp
    assert np.allclose(more["se_vis"], full["se_vis"][:5], rtol=1e-5)
    # a damaged chunk and an inconsistent one (a readable npz of the wrong length) are recomputed
    damaged, short = tmp_path / "b" / "chunk_00000_00002.npz", tmp_path / "b" / "chunk_00002_00004.npz"
    damaged.write_bytes(b"PK\x03\x04 not a zip")
    with np.load(short) as stored:
        np.savez(short, **{k: stored[k][:1] for k in stored.files})
    again = P.evaluate_method(method, proto, settings, gaussian, tmp_path / "b", limit=5, progress=False)
    assert np.allclose(again["se_vis"], full["se_vis"][:5], rtol=1e-5)
    assert P.read_chunk(damaged, 2) is not None and len(P.read_chunk(short, 2)["se_vis"]) == 2


def test_image_metrics_exclude_out_of_distribution_vertices_from_the_spread():
    model = _model()
    V = model.num_vertices
    rng = np.random.default_rng(4)
    gt = rng.normal(0, 1, (1, V, 3))
    reference = gt + rng.normal(0, 1, (300, V, 3))
    gaussian = M.VertexGaussian.fit(reference)
    x = gt[0] + rng.normal(0, 0.3, (3, V, 3))
    x[2, :40] += 500.0  # sample 2 is far out of distribution on 40 vertices
    front = np.ones((1, V), bool)
    vis = front.copy()
    vis[0, V // 2 :] = False
    h = Hypotheses(shapes=np.zeros((1, 2, model.shape_dim), np.float32), scores=np.zeros((1, 2)),
                   chosen=np.zeros(1, np.int64), meshes=x[None])
    row = P.image_metrics(h, gt, gt, front, vis, gaussian, model)
    assert row["std_vis"][0] == pytest.approx(M.std_s(x, gaussian, vis[0]))
    assert row["std_vis"][0] < 0.5 * M.std_s(x, None, vis[0])  # the 500 mm outliers do not count
    assert row["ode"][0] > 0 and row["ode_o"][0] == 0


def test_reference_is_never_the_test_set(protocol, heldout, tmp_path, capsys):
    model = _model()
    manifest = Manifest.load(protocol)
    prior = load_reference(model, manifest, count=50)
    assert prior.record == {"source": "prior", "seed": REFERENCE_SEED, "samples": 50, "min_expression": 0.3,
                            "neutral_fraction": 0.0}
    # the prior draws follow the protocol's recipe: no expression weaker than min_expression
    _, expression, _ = prior_coefficients(model, 200, 3, min_expression=0.3)
    assert float(expression.abs().amax(1).min()) >= 0.3
    # a held-out folder: its first `count` samples (across shards)
    held = folder_reference(heldout, model, count=6)
    assert held.record["source"] == "folder" and held.record["samples"] == 6
    shape, expression = coefficients(10, 2)
    with torch.no_grad():
        meshes = model(torch.from_numpy(shape[:6]), torch.from_numpy(expression[:6])).vertices.numpy() * 1000
    assert np.allclose(held.gaussian.mean, meshes.mean(0), atol=1e-3)
    # the protocol folder itself is refused, with one line, before any method is loaded
    code, _, err = run(capsys, *co545(protocol, tmp_path / "r", "--method", "test-eval-fake", "--reference", protocol))
    assert code == 2 and "--reference needs training or held-out data" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_cache_signature_includes_the_reference(protocol, heldout, tmp_path, capsys):
    out = tmp_path / "report"
    argv = co545(protocol, out, "--method", "test-eval-fake")
    assert run(capsys, *argv)[0] == 0
    chunk = next((out / "cache" / "fake").glob("chunk_*.npz"))
    stamp = chunk.stat().st_mtime_ns
    assert run(capsys, *argv)[0] == 0
    assert chunk.stat().st_mtime_ns == stamp  # same settings: reused
    assert run(capsys, *argv, "--reference", heldout)[0] == 0
    assert chunk.stat().st_mtime_ns != stamp  # other reference: recomputed
    signature = json.loads((out / "cache" / "fake" / "signature.json").read_text())
    assert signature["reference"]["source"] == "folder" and signature["reference"]["samples"] == 10
    assert json.loads((out / "metrics.json").read_text())["reference"]["path"] == str(heldout.resolve())


@pytest.mark.parametrize("option, value, message", [
    ("--limit", "0", "--limit must be an integer >= 1"),
    ("--steps", "0", "--steps must be an integer >= 1 and <= 1000"),
    ("--steps", "1001", "--steps must be an integer >= 1 and <= 1000"),
    ("--samples", "0", "--samples must be an integer >= 1"),
    ("--shapes", "0", "--shapes must be an integer >= 1"),
    ("--seed", "-1", "--seed must be an integer >= 0"),
    ("--device", "tpu", "--device must be one of cpu, cuda, mps"),
    ("--method", "no-such-method", "unknown method 'no-such-method'"),
    ("--reference-samples", "1", "--reference-samples must be an integer >= 2"),
])
def test_bad_options_fail_in_one_line_before_any_work(protocol, tmp_path, capsys, option, value, message):
    for command in ("co545", "rank") if option == "--reference-samples" else ("co545", "rank", "shape"):
        argv = ["eval", command, "--data", tmp_path / "missing", option, value]
        if command == "co545":
            argv += ["-o", tmp_path / "out"]
        code, _, err = run(capsys, *argv)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, (command, err)
    assert not (tmp_path / "out").exists()


def test_protocol_of_other_encoders_or_face_model_is_refused(protocol, tmp_path, capsys):
    import shutil

    other = tmp_path / "other"
    shutil.copytree(protocol, other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["encoders"]["identity"] = {"name": "arcface", "dim": 512}
    (other / "manifest.json").write_text(json.dumps(manifest))
    code, _, err = run(capsys, *co545(other, tmp_path / "a", "--method", "test-eval-fake"))
    assert code == 2 and "identity encoder" in err and "fake-id" in err and len(err.strip().splitlines()) == 1
    # the single method uses no encoder: it runs on the same folder
    assert run(capsys, *co545(other, tmp_path / "b", "--method", "test-eval-single"))[0] == 0
    manifest["face_model"]["fingerprint"] = "0" * 64
    (other / "manifest.json").write_text(json.dumps(manifest))
    code, _, err = run(capsys, *co545(other, tmp_path / "c", "--method", "test-eval-single"))
    assert code == 2 and "fingerprint" in err and len(err.strip().splitlines()) == 1


def test_rank_and_shape_with_registered_methods(protocol, tmp_path, capsys):
    common = ["--data", protocol, "--shapes", 4]
    code, out, err = run(capsys, "eval", "rank", *common, "--method", "test-eval-fake", "-o", tmp_path / "rank",
                         "--reference-samples", 200)
    assert code == 0, err
    assert "fake-rank" in out and "oracle (best of 4)" in out and "gap closed" in out and "precision" in out
    code, _, err = run(capsys, "eval", "rank", *common, "--method", "test-eval-single")
    assert code == 2 and "does not rank" in err
    code, out, err = run(capsys, "eval", "shape", *common, "--limit", 2, "--method", "test-eval-fake",
                         "--method", "test-eval-single")
    assert code == 0, err
    rows = {line.split()[0]: [float(v) for v in line.split()[1:]] for line in out.splitlines()[2:]}
    assert set(rows) == {"fake-rank", "single"} and "on 2 protocol images" in out
    assert all(len(v) == 3 and all(math.isfinite(x) and x >= 0 for x in v) for v in rows.values())
