"""FOCUS's perceptual network F (BASELINES.md A.2.3, A.11.2): pictures aligned to the ArcFace template
by their landmarks, then the torch ArcFace's embedding (L_per) or shallow features (L_dist, L_presv).

The alignment is the front end's (:func:`ofer.frontend.align.arcface_matrix`: a similarity from five
points onto the template) computed on detached landmarks, and the warp is ``grid_sample`` (bilinear,
black outside, the same pixel-centre convention as ``cv2.warpAffine``), so gradients reach the
pictures and the masks multiplied into them, not the landmarks.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ...frontend.align import ARCFACE_SIZE, arcface_matrix
from ...frontend.encoders.arcface_torch import ArcFaceFeatures, torch_arcface


def five_points(landmarks68: torch.Tensor) -> torch.Tensor:
    """(B, 68, 2) iBUG-68 -> (B, 5, 2): image-left eye, image-right eye, nose tip, mouth corners."""
    return torch.stack([landmarks68[:, 36:42].mean(1), landmarks68[:, 42:48].mean(1), landmarks68[:, 30],
                        landmarks68[:, 48], landmarks68[:, 54]], dim=1)


def arcface_crops(images: torch.Tensor, landmarks68: torch.Tensor, size: int = ARCFACE_SIZE) -> torch.Tensor:
    """(B, 3, H, W) pictures -> (B, 3, size, size) ArcFace-aligned crops (differentiable in ``images``)."""
    height, width = images.shape[-2:]
    points = five_points(landmarks68).detach().cpu().double().numpy()
    grids = []
    for keypoints in points:
        forward = np.vstack([arcface_matrix(keypoints, size), [0.0, 0.0, 1.0]])
        inverse = np.linalg.inv(forward)[:2]  # crop pixel -> picture pixel
        ys, xs = np.meshgrid(np.arange(size, dtype=np.float64), np.arange(size, dtype=np.float64), indexing="ij")
        source = np.stack([xs, ys, np.ones_like(xs)], -1) @ inverse.T  # (size, size, 2) picture pixels
        grids.append(np.stack([(2 * source[..., 0] + 1) / width - 1, (2 * source[..., 1] + 1) / height - 1], -1))
    grid = torch.from_numpy(np.stack(grids)).to(images)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def perceptual_features(images: torch.Tensor, landmarks68: torch.Tensor) -> ArcFaceFeatures:
    """F of (B, 3, H, W) pictures in [0, 1] with their (B, 68, 2) landmarks: embedding and shallow features."""
    return torch_arcface()(arcface_crops(images, landmarks68))
