"""FOCUS's perceptual network: the differentiable ArcFace alignment agrees with the front end's."""

import numpy as np
import torch

from ofer.frontend.align import align_arcface
from ofer.frontend.encoders.arcface import ArcFaceEncoder
from ofer.methods.focus.perceptual import arcface_crops, five_points, perceptual_features


def _face_like(size=160, seed=0):
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (size // 8, size // 8, 3)).astype(np.float64)
    import cv2

    return cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC).clip(0, 255).astype(np.uint8)


def _landmarks(size=160):
    lm = np.zeros((68, 2))
    lm[36:42] = (0.36 * size, 0.42 * size)
    lm[42:48] = (0.64 * size, 0.40 * size)
    lm[30] = (0.5 * size, 0.58 * size)
    lm[48], lm[54] = (0.39 * size, 0.72 * size), (0.62 * size, 0.73 * size)
    return lm


def test_warp_matches_the_front_ends_alignment():
    image, lm = _face_like(), _landmarks()
    points = five_points(torch.from_numpy(lm)[None])[0].numpy()
    expected = align_arcface(image, points, antialias=False).astype(np.float64) / 255
    picture = torch.from_numpy(image).permute(2, 0, 1)[None].double() / 255
    got = arcface_crops(picture, torch.from_numpy(lm)[None])[0].permute(1, 2, 0).numpy()
    assert np.abs(got - expected).max() < 2 / 255


def test_features_match_the_encoder_and_gradients_reach_the_picture():
    image, lm = _face_like(seed=1), _landmarks()
    points = five_points(torch.from_numpy(lm)[None])[0].numpy()
    expected = ArcFaceEncoder().embed(align_arcface(image, points, antialias=False)[None])[0]
    picture = (torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255).requires_grad_()
    out = perceptual_features(picture, torch.from_numpy(lm).float()[None])
    assert float(out.embedding[0].detach().numpy() @ expected) > 0.98
    out.embedding.sum().backward()
    assert picture.grad.abs().sum() > 0
