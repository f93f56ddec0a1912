"""`ofer eval photos`: each metric on a hand-computed case, the occluders, option checks and one CLI run."""

import json
import math

import numpy as np
import pytest
import torch
from conftest import SHARED, require

from ofer.cli.main import main
from ofer.evaluation import photo_metrics as P
from ofer.evaluation.photo_occluders import OCCLUDERS, parse_occluders, paste_occluder
from ofer.frontend import BLENDSHAPE_NAMES
from ofer.geometry import rodrigues

FACES = SHARED / "assets/faces"


def _similarity(points, scale=1.7, axis=(0.3, -0.5, 0.8), shift=(5.0, -2.0, 40.0)):
    rot = rodrigues(torch.tensor([axis], dtype=torch.float64))[0].numpy()
    return scale * points @ rot.T + np.asarray(shift)


def _cross(epsilon: float = 0.0):
    """The six points +-e1, +-e2, +-e3; ``epsilon`` stretches x outwards and squeezes y inwards."""
    points = np.concatenate([np.eye(3), -np.eye(3)])
    points[[0, 3], 0] *= 1 + epsilon
    points[[1, 4], 1] *= 1 - epsilon
    return points


# ------------------------------------------------------------------------------------------ metrics


def test_identity_change_ignores_a_similarity_and_measures_a_deformation():
    base = _cross()
    assert P.identity_change(_similarity(base), base) == pytest.approx(0.0, abs=1e-9)
    # deformed onto base: no shift, R = I (cross-covariance diag(2.2, 1.8, 2)), s = 6 / (6 + 4 eps^2);
    # residuals s (1 +- eps) - 1 on the x / y points and s - 1 on the z points, two points each
    eps = 0.1
    s = 6 / (6 + 4 * eps**2)
    expected = math.sqrt((2 * (s * (1 + eps) - 1) ** 2 + 2 * (s * (1 - eps) - 1) ** 2 + 2 * (s - 1) ** 2) / 6)
    assert P.identity_change(_cross(0.1), base) == pytest.approx(expected, rel=1e-9)
    assert P.identity_change(_similarity(_cross(0.1), scale=1.0), base) == pytest.approx(expected, rel=1e-9)
    # the mask restricts both the alignment and the distance: the deformed points left out -> 0
    assert P.identity_change(_cross(0.1), base, mask=np.array([0, 0, 1, 0, 0, 1], bool)) == pytest.approx(0, abs=1e-9)


def test_identity_distances_and_same_vs_different_pairs():
    meshes = np.stack([_cross(), _similarity(_cross()), _cross(0.1), _cross(0.2)])
    d = P.identity_distances(meshes)
    assert np.allclose(d, d.T) and np.allclose(np.diag(d), 0) and d[0, 1] == pytest.approx(0, abs=1e-9)
    distances = np.array([[0, 1, 4, 6], [1, 0, 5, 7], [4, 5, 0, 2], [6, 7, 2, 0]], float)
    pairs = P.pair_means(distances, ["a", "a", "b", None])  # the unknown person is left out
    assert pairs["same"] == 1 and pairs["different"] == pytest.approx(4.5) and pairs["ratio"] == pytest.approx(4.5)
    assert (pairs["same_pairs"], pairs["different_pairs"]) == (1, 2)
    assert math.isnan(P.pair_means(distances, ["a", "b", "c", "d"])["ratio"])


def test_pearson_and_bias_on_a_linear_case():
    reference = np.array([0.1, 0.4, 0.2, 0.9])
    result = P.agreement(reference + 0.05, reference)
    assert result["r"] == pytest.approx(1.0) and result["bias"] == pytest.approx(0.05) and result["n"] == 4
    assert P.pearson(-2 * reference, reference) == pytest.approx(-1.0)
    assert math.isnan(P.pearson([1.0, 2.0], [3.0, 4.0]))  # fewer than 3 values
    assert math.isnan(P.pearson([1.0, 1.0, 1.0], [3.0, 4.0, 5.0]))  # zero variance
    assert math.isnan(P.agreement([], [])["bias"])


def test_expression_groups_average_their_names():
    scores = np.zeros(len(BLENDSHAPE_NAMES))
    for name, value in {"mouthSmileLeft": 0.8, "mouthSmileRight": 0.4, "jawOpen": 0.3, "mouthPucker": 0.6}.items():
        scores[BLENDSHAPE_NAMES.index(name)] = value
    groups = P.group_values(scores, BLENDSHAPE_NAMES)
    assert groups["smile"] == pytest.approx(0.6) and groups["jawOpen"] == pytest.approx(0.3)
    assert groups["funnel/pucker"] == pytest.approx(0.3) and groups["blink"] == 0
    batch = P.group_values(np.stack([scores, 2 * scores]), BLENDSHAPE_NAMES)["smile"]
    assert np.allclose(batch, [0.6, 1.2])
    assert P.has_groups(BLENDSHAPE_NAMES) and not P.has_groups([f"expr{i:03d}" for i in range(50)])


def test_smile_fraction_counts_hypotheses_above_the_threshold():
    assert P.smile_fraction([0.1, 0.35, 0.5, 0.3]) == 0.5  # 0.3 itself does not count
    assert P.smile_fraction([0.9], threshold=0.95) == 0.0
    assert math.isnan(P.smile_fraction([]))


def test_smile_share_is_the_ratio_of_mean_smiles_on_smiling_photos_only():
    from ofer.evaluation.photos import _smile_share

    rows = [{"mediapipe/smile": 0.8, "expression/smile": 0.2}, {"mediapipe/smile": 0.6, "expression/smile": 0.5},
            {"mediapipe/smile": 0.1, "expression/smile": 0.9}]  # not smiling: left out
    assert _smile_share(rows) == pytest.approx((0.2 + 0.5) / 2 / ((0.8 + 0.6) / 2))
    assert math.isnan(_smile_share(rows[2:]))


def test_hidden_region_fidelity_in_interocular_distances():
    reference = np.zeros((68, 2))
    reference[:, 0] = np.arange(68)
    reference[45] = reference[36] + (10.0, 0.0)  # IOD = 10 px
    hidden = np.zeros(68, bool)
    hidden[48:68] = True
    first = reference.copy()
    first[hidden] += (0.0, 1.0)  # hidden 1 px off, visible exact
    second = reference.copy()
    second[hidden] += (3.0, 0.0)
    second[~hidden] += (0.0, -2.0)  # hidden 3 px, visible 2 px off
    result = P.landmark_fidelity(np.stack([first, second]), reference, hidden)
    assert result["hidden_best"] == pytest.approx(0.1) and result["hidden_average"] == pytest.approx(0.2)
    assert result["visible_best"] == pytest.approx(0.0) and result["visible_average"] == pytest.approx(0.1)
    assert math.isnan(P.landmark_fidelity(first[None], reference, np.zeros(68, bool))["hidden_best"])


def test_region_vertices_and_spread():
    neutral = np.array([[0, 0, 0], [4, 0, 0], [12, 0, 0], [0, 30, 0]], float)
    landmarks = np.zeros((68, 3))
    landmarks[:, 1] = 100.0
    landmarks[50] = (1.0, 0.0, 0.0)
    region = P.region_vertices(neutral, landmarks, [50], radius=10.0)
    assert region.tolist() == [True, True, False, False]
    assert P.region_vertices(neutral, landmarks, [50], 10.0, within=np.array([0, 1, 1, 1], bool)).tolist() == \
        [False, True, False, False]
    shift = np.array([2.0, 0.0, 0.0])  # two hypotheses 2 px apart in x: std 1 in x, 0 in y, z
    meshes = np.stack([neutral, neutral + shift])
    assert P.region_spread(meshes, region) == pytest.approx(1 / math.sqrt(3))
    assert math.isnan(P.region_spread(meshes[:1], region))


def test_defined_mean_skips_nan():
    assert P.defined_mean([1.0, float("nan"), 3.0]) == (2.0, 2)
    value, count = P.defined_mean([])
    assert math.isnan(value) and count == 0


# ---------------------------------------------------------------------------------------- occluders


@pytest.fixture(scope="module")
def face68(default_model):
    """An upright face's iBUG-68 points (pixels) in a 400 x 400 image: the default head's, projected."""
    with torch.no_grad():
        points = default_model().landmarks68[0].numpy()
    return np.c_[points[:, 0], -points[:, 1]] * 1800 + (200.0, 200.0)


def test_occluders_cover_their_region(face68):
    image = np.full((400, 400, 3), 200, np.uint8)
    pixel = lambda mask, index: mask[face68[index, 1].astype(int), face68[index, 0].astype(int)]
    eyes, mouth, hand = (paste_occluder(image, face68, name) for name in OCCLUDERS)
    brows_and_eyes = [*range(17, 27), *range(36, 48)]
    assert pixel(eyes.mask, brows_and_eyes).all() and not pixel(eyes.mask, range(48, 68)).any()
    assert pixel(mouth.mask, range(48, 68)).all() and not pixel(mouth.mask, brows_and_eyes).any()
    assert (eyes.image[eyes.mask] == 128).all() and (eyes.image[~eyes.mask] == 200).all()
    assert pixel(hand.mask, range(48, 68)).mean() > 0.8 and hand.mask.sum() > mouth.mask.sum()


def test_parse_occluders():
    assert parse_occluders("mouth, eyes,mouth") == ("mouth", "eyes")
    for bad in ("nose", ""):
        with pytest.raises(Exception, match="--occluders"):
            parse_occluders(bad)


# --------------------------------------------------------------------------------------------- CLI


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("extra, message", [
    (["--occluders", "eyes,nose"], "unknown occluder 'nose'"),
    (["--method", "nonesuch"], "unknown method 'nonesuch'"),
    (["--manifest", "/nonexistent.csv"], "/nonexistent.csv: file not found"),
    (["--seed", "-1"], "--seed"),
])
def test_bad_options_are_refused_up_front(capsys, tmp_path, extra, message):
    code, _, err = run(capsys, "eval", "photos", tmp_path / "missing.jpg", "-o", tmp_path / "r", *extra)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "r").exists()


def test_cli_two_photos_and_a_bad_file(capsys, tmp_path):
    photos = [require(FACES / "obama.jpg"), require(FACES / "biden.jpg")]
    bad = tmp_path / "notes.jpg"
    bad.write_text("not an image")
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("file,person\nobama.jpg,obama\nbiden.jpg,biden\nelsewhere.jpg,x\n")
    out_dir = tmp_path / "report"
    code, out, err = run(capsys, "eval", "photos", *photos, bad, "--manifest", manifest, "--method", "prior",
                         "--shapes", 3, "--expressions", 2, "--occluders", "mouth", "--no-photos", "-o", out_dir)
    assert code == 0, err
    errors = [line for line in err.splitlines() if line.startswith("ofer: error:")]
    assert errors == [f"ofer: error: {bad}: not an image (unrecognised format)"]
    assert "### Identity change (mm)" in out and "| random prior | 0.00 | " in out  # the prior ignores the image
    metrics = json.loads((out_dir / "metrics.json").read_text())
    summary = metrics["methods"]["random prior"]
    assert summary["faces"] == 2 and summary["pairs"]["different_pairs"] == 1
    assert summary["means"]["identity_change/seed"]["mean"] > 0
    assert 0 <= summary["means"]["fidelity/mouth/hidden_best"]["mean"] < 0.5
    assert "Definitions" in (out_dir / "report.md").read_text() and (out_dir / "photos.png").stat().st_size > 0
