"""Evaluation metrics on hand-computed cases: distances, SE/CSE, ASD family, ODE, STD-S, ranking, NaN rules."""

import math

import numpy as np
import pytest
import torch
from scipy.spatial.distance import mahalanobis as scipy_mahalanobis

from ofer.evaluation import (
    VertexGaussian,
    asd,
    asd_o,
    closest_sample_error,
    max_asd_v,
    min_asd_v,
    ode,
    pairwise_rms,
    ranking_table,
    rms_distance,
    sample_error,
    sample_errors,
    std_s,
    topk_overlap,
)

RNG = np.random.default_rng(0)
MESH = RNG.normal(0, 30, (50, 3))  # a 50-vertex "mesh" in mm


def offset(mesh, vector, where=None):
    out = mesh.copy()
    if where is None:
        out += vector
    else:
        out[where] += vector
    return out


def test_rms_distance_numpy_torch_and_masks():
    a = MESH
    assert rms_distance(a, a) == 0
    b = offset(a, [3.0, 4.0, 0.0])  # every vertex 5 mm away
    assert rms_distance(a, b) == pytest.approx(5.0)
    # one vertex 10 mm away out of 4 evaluated: sqrt(100 / 4) = 5
    c = offset(a, [10.0, 0, 0], where=[0])
    mask = np.zeros(len(a), bool)
    mask[:4] = True
    assert rms_distance(a, c, mask) == pytest.approx(5.0)
    assert rms_distance(a, c, np.arange(4)) == pytest.approx(5.0)
    assert rms_distance(a, c, ~mask) == 0
    # per-pair masks (2, V) and batches
    masks = np.stack([mask, ~mask])
    assert np.allclose(rms_distance(np.stack([a, a]), np.stack([c, c]), masks), [5.0, 0.0])
    # torch, differentiable
    ta = torch.tensor(a, requires_grad=True)
    d = rms_distance(ta, torch.tensor(b), torch.tensor(mask))
    assert isinstance(d, torch.Tensor) and float(d.detach()) == pytest.approx(5.0)
    d.backward()
    assert ta.grad is not None and float(ta.grad[:4].abs().sum()) > 0 and float(ta.grad[4:].abs().sum()) == 0


def test_se_cse_by_hand():
    gt = MESH
    samples = np.stack([offset(gt, [1.0, 0, 0]), offset(gt, [0, 3.0, 0]), offset(gt, [0, 0, 2.0])])
    assert np.allclose(sample_errors(samples, gt), [1, 3, 2])
    assert sample_error(samples, gt) == pytest.approx(2.0)
    assert closest_sample_error(samples, gt) == pytest.approx(1.0)
    # evaluated set: a sample that is wrong only outside the set counts as exact
    bad_outside = offset(gt, [100.0, 0, 0], where=slice(10, None))
    mask = np.zeros(len(gt), bool)
    mask[:10] = True
    assert sample_errors(bad_outside[None], gt, mask)[0] == 0
    assert closest_sample_error(np.stack([samples[1], bad_outside]), gt, mask) == 0
    assert sample_error(np.stack([gt, gt]), gt) == 0


def test_asd_of_two_offset_samples_is_their_distance():
    x0 = MESH
    x1 = offset(MESH, [2.0, -1.0, 2.0])  # |v| = 3
    assert asd(np.stack([x0, x1])) == pytest.approx(3.0)
    assert asd(np.stack([x0, x0.copy()])) == 0
    p = pairwise_rms(np.stack([x0, x1, x0]))
    assert np.allclose(p, [[0, 3, 0], [3, 0, 3], [0, 3, 0]])


def test_min_max_asd_v_three_samples():
    visible = np.zeros(len(MESH), bool)
    visible[:20] = True
    hidden = ~visible
    # on visible vertices the samples sit at 0, 1 and 3 mm along x; occluded vertices differ wildly
    x = [offset(offset(MESH, [d, 0, 0], where=visible), RNG.normal(0, 50, 3), where=hidden) for d in (0.0, 1.0, 3.0)]
    x = np.stack(x)
    # visible pairwise: d01 = 1, d02 = 3, d12 = 2
    assert min_asd_v(x, visible) == pytest.approx((1 + 1 + 2) / 3)
    assert max_asd_v(x, visible) == pytest.approx((3 + 2 + 3) / 3)
    assert min_asd_v(x, np.flatnonzero(visible)) == pytest.approx(4 / 3)


def test_asd_o_by_hand():
    gt = np.zeros((2, 3))
    visible = np.array([True, False])
    x0 = np.array([[1.0, 0, 0], [0, 0, 0]])  # visible error 1, occluded at 0
    x1 = np.array([[0, 2.0, 0], [4.0, 0, 0]])  # visible error 2, occluded 4 mm from x0
    samples = np.stack([x0, x1])
    value, h, d_v, d_o = asd_o(samples, gt, visible, tau=10.0, return_terms=True)
    assert np.allclose(d_v, [0.1, 0.2]) and np.allclose(d_o, [0.4, 0.4])
    h0 = 2 * 0.9 * 0.4 / (0.9 + 0.4)
    h1 = 2 * 0.8 * 0.4 / (0.8 + 0.4)
    assert np.allclose(h, [h0, h1]) and value == pytest.approx((h0 + h1) / 2)
    # clipping: d_o = 4/3 -> 1
    assert asd_o(samples, gt, visible, tau=3.0) == pytest.approx((0.8 + 0.5) / 2)
    # no occluded diversity -> 0; perfect visible fit + full diversity -> 1
    assert asd_o(np.stack([x0, x0]), gt, visible, tau=10.0) == 0
    perfect = np.stack([np.array([[0, 0, 0], [0, 0, 0.0]]), np.array([[0, 0, 0], [20.0, 0, 0]])])
    assert asd_o(perfect, gt, visible, tau=10.0) == pytest.approx(1.0)
    # region: a third vertex outside the region is ignored
    gt3 = np.zeros((3, 3))
    s3 = np.concatenate([samples, np.full((2, 1, 3), 99.0) * [[[1]], [[-1]]]], 1)
    assert asd_o(s3, gt3, [True, False, False], tau=10.0, region=[0, 1]) == pytest.approx(value)


def reference_set(num=300, seed=1):
    rng = np.random.default_rng(seed)
    scale = np.array([1.0, 2.0, 0.5])
    return MESH[None] + rng.normal(0, 1, (num, len(MESH), 3)) * scale


def test_vertex_gaussian_and_ode():
    ref = reference_set()
    g = VertexGaussian.fit(ref, ridge=1e-6)
    # Mahalanobis distance agrees with scipy's
    x = ref[0] + 0.7
    cov = np.cov(ref[:, 5].T)
    expected = scipy_mahalanobis(x[5], ref[:, 5].mean(0), np.linalg.inv(cov + 1e-6 * np.eye(3)))
    assert g.mahalanobis(x)[5] == pytest.approx(expected, rel=1e-9)
    # in-distribution samples (reference meshes themselves, or the mean) have ODE 0
    assert ode(ref[:10], g) == 0
    assert ode(g.mean, g) == 0
    assert std_s(ref[:10], g) > 0
    # a sample far away on the first 10 vertices only
    far = offset(g.mean, [0, 0, 40.0], where=slice(0, 10))  # 80 standard deviations in z
    visible = np.zeros(len(MESH), bool)
    visible[10:] = True
    assert ode(far, g) > 0
    assert ode(far, g, mask=~visible) > 50  # ODE-O
    assert ode(far, g, mask=visible) == 0  # ODE-V
    md = g.mahalanobis(far)
    assert ode(far, g) == pytest.approx(np.maximum(md - g.max_reference, 0).mean())
    assert g.out_of_distribution(far)[:10].all() and not g.out_of_distribution(far)[10:].any()


def test_std_s_by_hand():
    x0 = np.zeros((2, 3))
    x1 = np.array([[2.0, 0, 0], [2.0, 2.0, 2.0]])
    samples = np.stack([x0, x1])
    # vertex 0: per-coordinate std (1, 0, 0) -> RMS sqrt(1/3); vertex 1: (1, 1, 1) -> 1
    assert std_s(samples) == pytest.approx((math.sqrt(1 / 3) + 1) / 2)
    assert std_s(samples, mask=[0]) == pytest.approx(math.sqrt(1 / 3))
    # a reference set where vertex 1 never moves: vertex 1 of x1 is out of distribution and is excluded
    rng = np.random.default_rng(2)
    ref = np.zeros((200, 2, 3))
    ref[:, 0] = rng.normal(0, 3, (200, 3))
    ref[:, 1] = rng.normal(0, 0.01, (200, 3))
    g = VertexGaussian.fit(ref)
    assert not g.out_of_distribution(samples)[:, 0].any() and g.out_of_distribution(samples)[1, 1]
    assert std_s(samples, g) == pytest.approx(math.sqrt(1 / 3))
    assert math.isnan(std_s(samples, g, mask=[1]))


def std_reference():
    """Vertex 0 spreads (std 3 mm per axis), vertex 1 hardly moves (0.01 mm): both centred at 0."""
    rng = np.random.default_rng(3)
    ref = np.zeros((400, 2, 3))
    ref[:, 0] = rng.normal(0, 3, (400, 3))
    ref[:, 1] = rng.normal(0, 0.01, (400, 3))
    return VertexGaussian.fit(ref)


def test_std_s_leaves_out_only_the_out_of_distribution_sample_at_that_vertex():
    g = std_reference()
    # three samples; at vertex 1 samples 0 and 1 sit at 0 and 0.02 mm along x (in distribution), sample 2 is
    # 50 mm away (out); at vertex 0 all three are in distribution: x = 0, 2, 4
    x = np.zeros((3, 2, 3))
    x[:, 0, 0] = [0.0, 2.0, 4.0]
    x[1, 1, 0], x[2, 1, 0] = 0.02, 50.0
    ood = g.out_of_distribution(x)
    assert not ood[:, 0].any() and ood[:, 1].tolist() == [False, False, True]
    s0 = math.sqrt(np.var([0.0, 2.0, 4.0]) / 3)  # RMS over xyz of (std_x, 0, 0)
    s1 = math.sqrt(np.var([0.0, 0.02]) / 3)  # vertex 1: std over samples 0 and 1 only
    assert std_s(x, g) == pytest.approx((s0 + s1) / 2)
    assert std_s(x, g, mask=[1]) == pytest.approx(s1)
    # without the reference nothing is excluded: sample 2's 50 mm dominate vertex 1
    assert std_s(x, mask=[1]) == pytest.approx(math.sqrt(np.var([0.0, 0.02, 50.0]) / 3))
    # a vertex with fewer than two in-distribution samples is dropped; none left -> NaN
    x[1, 1, 0] = 60.0
    assert std_s(x, g) == pytest.approx(s0)
    assert math.isnan(std_s(x, g, mask=[1]))


def test_undefined_metrics_are_nan():
    one = MESH[None]
    gt = MESH
    assert math.isnan(asd(one)) and math.isnan(min_asd_v(one, np.arange(5))) and math.isnan(max_asd_v(one, [0]))
    assert math.isnan(std_s(one)) and math.isnan(asd_o(one, gt, np.arange(5), tau=10.0))
    two = np.stack([MESH, offset(MESH, [1.0, 0, 0])])
    everything = np.ones(len(MESH), bool)
    # no occluded vertex: ASD-O and ODE-O are undefined; so is any metric on an empty vertex set
    assert math.isnan(asd_o(two, gt, everything, tau=10.0))
    value, h, d_v, d_o = asd_o(two, gt, everything, tau=10.0, return_terms=True)
    assert math.isnan(value) and len(h) == len(d_v) == len(d_o) == 0
    g = VertexGaussian.fit(reference_set(50))
    nothing = np.zeros(len(MESH), bool)
    assert math.isnan(ode(two, g, nothing)) and math.isnan(std_s(two, g, nothing))
    assert math.isnan(sample_error(two, gt, nothing)) and math.isnan(closest_sample_error(two, gt, nothing))
    assert math.isnan(min_asd_v(two, nothing))
    # defined cases stay numbers
    assert min_asd_v(two, everything) == pytest.approx(1.0) and asd(two) == pytest.approx(1.0)


def test_vertex_gaussian_fit_in_chunks_matches_one_pass():
    ref = reference_set(70)
    one = VertexGaussian.fit(ref, chunk=1000)
    chunked = VertexGaussian.fit(ref.astype(np.float32), chunk=8)
    assert one.count == chunked.count == 70
    assert np.allclose(one.mean, ref.mean(0)) and np.allclose(chunked.mean, one.mean, atol=1e-5)
    assert np.allclose(one.cov[3], np.cov(ref[:, 3].T) + 1e-3 * np.eye(3))
    assert np.allclose(chunked.cov, one.cov, atol=1e-4)
    assert np.allclose(chunked.max_reference, one.max_reference, rtol=1e-4)
    assert np.allclose(one.max_reference, one.mahalanobis(ref).max(0))
    with pytest.raises(ValueError, match="R >= 1"):
        VertexGaussian.fit(np.zeros((0, 5, 3)))


def test_ranking_metrics_by_hand():
    errors = np.array([[1.0, 2.0, 3.0, 4.0], [4.0, 3.0, 1.0, 2.0]])
    perfect = ranking_table(errors, -errors, ks=(1, 2))
    assert perfect["ranked_error"] == perfect["oracle_error"] == 1.0
    assert perfect["average_error"] == 2.5
    assert perfect["gap_closed"] == pytest.approx(1.0)
    assert perfect["precision@1"] == perfect["iou@2"] == 1.0
    assert perfect["top2_error_by_score"] == perfect["top2_error_by_error"] == 1.5

    reverse = ranking_table(errors, errors, ks=(1, 2))
    assert reverse["ranked_error"] == 4.0
    assert reverse["gap_closed"] == pytest.approx((2.5 - 4.0) / 1.5)  # -1: worse than a random pick
    assert reverse["precision@1"] == reverse["precision@2"] == reverse["iou@2"] == 0.0
    assert reverse["top2_error_by_score"] == 3.5

    # partial: top-2 by score {1, 2}, top-2 by error {0, 1}
    scores = np.array([[0.1, 0.9, 0.5, 0.2]])
    table = ranking_table(errors[:1], scores, ks=(1, 2, 10))
    assert table["ranked_error"] == 2.0
    assert table["gap_closed"] == pytest.approx((2.5 - 2.0) / (2.5 - 1.0))
    assert table["precision@2"] == pytest.approx(0.5) and table["iou@2"] == pytest.approx(1 / 3)
    assert table["precision@10"] == 1.0  # k clipped to N
    precision, iou = topk_overlap(errors[:1], scores, 2)
    assert precision[0] == 0.5 and iou[0] == pytest.approx(1 / 3)
    # ties in the scores: the first candidate is taken
    assert ranking_table(errors, np.zeros_like(errors))["ranked_error"] == pytest.approx((1 + 4) / 2)
    # no gap: NaN
    assert math.isnan(ranking_table(np.ones((2, 3)), RNG.normal(size=(2, 3)))["gap_closed"])


def test_medoid_index_picks_the_sample_closest_to_the_mean():
    from ofer.evaluation.ranking import medoid_index

    # one vertex, samples at x = 0, 1, 5 (mean 2) and x = 3, 3.5, -10 (mean -1.17)
    xs = np.array([[0.0, 1.0, 5.0], [3.0, 3.5, -10.0]])
    meshes = np.zeros((2, 3, 1, 3))
    meshes[..., 0, 0] = xs
    assert medoid_index(meshes).tolist() == [1, 0]
