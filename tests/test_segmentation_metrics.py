"""FOCUS's segmentation and image-fitting metrics on hand-computed cases (BASELINES.md A.12)."""

import numpy as np
import pytest

from ofer.evaluation.segmentation import fitting_rmse, segmentation_scores


def test_all_face_on_a_region_30_percent_occluded():
    region = np.zeros((10, 10), bool)
    region[:, :] = True
    truth = region.copy()
    truth[:3] = False  # 30 % of the region is occluder
    scores = segmentation_scores(np.ones((10, 10), bool), truth, region)
    assert scores["tpr"] == 1.0 and scores["ppv"] == pytest.approx(0.7) and scores["acc"] == pytest.approx(0.7)
    assert scores["f1"] == pytest.approx(2 * 0.7 / 1.7)


def test_perfect_prediction_and_pixels_outside_the_region():
    region = np.zeros((6, 6), bool)
    region[1:5, 1:5] = True
    truth = np.zeros((6, 6), bool)
    truth[1:3, 1:5] = True
    predicted = truth.copy()
    predicted[0, :] = True  # outside the region: not counted
    assert segmentation_scores(predicted, truth, region) == {"acc": 1.0, "ppv": 1.0, "tpr": 1.0, "f1": 1.0}


def test_a_hand_computed_confusion():
    region = np.ones((1, 10), bool)
    truth = np.array([[1, 1, 1, 1, 0, 0, 0, 0, 0, 0]], bool)
    predicted = np.array([[1, 1, 0, 0, 1, 0, 0, 0, 0, 0]], bool)  # tp 2, fp 1, fn 2, tn 5
    s = segmentation_scores(predicted, truth, region)
    assert s["acc"] == pytest.approx(0.7) and s["ppv"] == pytest.approx(2 / 3) and s["tpr"] == pytest.approx(0.5)
    assert s["f1"] == pytest.approx(4 / 7)
    empty = segmentation_scores(np.zeros_like(truth), truth, region)
    assert np.isnan(empty["ppv"]) and empty["tpr"] == 0.0 and empty["f1"] == 0.0


def test_rmse_is_on_the_0_255_scale_inside_the_mask():
    target = np.zeros((2, 2, 3))
    rendered = np.zeros((2, 2, 3))
    rendered[0, 0] = 0.1  # 25.5 on every channel of one pixel
    rendered[1, 1] = 1.0  # outside the mask
    mask = np.array([[True, True], [False, False]])
    assert fitting_rmse(target, rendered, mask) == pytest.approx(np.sqrt(25.5**2 / 2))
    assert np.isnan(fitting_rmse(target, rendered, np.zeros((2, 2), bool)))
