"""Linear blend skinning: the pure-function core of skinned face models (FLAME).

Conventions (as in SMPL/FLAME and the ``smplx`` package):

- Rotations are axis-angle vectors (direction = axis, norm = angle in radians), turned into
  matrices by :func:`ofer.geometry.rodrigues`.
- ``parents[j]`` is the parent joint of joint ``j`` (``-1`` for the root) and every parent comes
  before its children (``parents[j] < j``).
- Pose correctives are linear in the flattened ``(R_j - I)`` of all non-root joints, so a model
  with ``J`` joints has ``9 * (J - 1)`` pose blend shapes.

All functions are differentiable and work for any float dtype and device.
"""

from __future__ import annotations

import torch

from ..geometry import rodrigues


def blend_shapes(betas: torch.Tensor, dirs: torch.Tensor) -> torch.Tensor:
    """Linear combination of blend shapes.

    Args:
        betas: (B, K) coefficients.
        dirs: (V, 3, K) blend shapes (vertex displacement per unit coefficient).
    Returns:
        (B, V, 3) displacements ``sum_k betas[:, k] * dirs[..., k]``.
    """
    return torch.einsum("bk,vck->bvc", betas, dirs)


def vertices2joints(J_regressor: torch.Tensor, vertices: torch.Tensor) -> torch.Tensor:
    """Regress joint locations from vertices.

    Args:
        J_regressor: (J, V) dense regressor (each row usually sums to 1).
        vertices: (B, V, 3).
    Returns:
        (B, J, 3) joint locations.
    """
    return torch.einsum("jv,bvc->bjc", J_regressor, vertices)


def _homogeneous(rot_mats: torch.Tensor, translations: torch.Tensor) -> torch.Tensor:
    """Stack rotations and translations into 4x4 rigid transforms.

    Args:
        rot_mats: (..., 3, 3).
        translations: (..., 3).
    Returns:
        (..., 4, 4) with last row ``[0, 0, 0, 1]``.
    """
    top = torch.cat((rot_mats, translations[..., None]), dim=-1)  # (..., 3, 4)
    bottom = torch.zeros_like(top[..., :1, :])
    bottom[..., 0, 3] = 1.0
    return torch.cat((top, bottom), dim=-2)


def batch_rigid_transform(
    rot_mats: torch.Tensor, joints: torch.Tensor, parents: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pose a kinematic chain.

    Joint ``j`` rotates by ``rot_mats[:, j]`` about its rest location, relative to its parent.

    Args:
        rot_mats: (B, J, 3, 3) local joint rotations.
        joints: (B, J, 3) rest-pose joint locations.
        parents: (J,) long, parent of each joint (``-1`` for the root, parents before children).
    Returns:
        posed_joints: (B, J, 3) joint locations after posing.
        rel_transforms: (B, J, 4, 4) world transforms of the joints, relative to the rest pose:
            a rest-pose point ``x`` bound to joint ``j`` goes to ``rel_transforms[:, j] @ [x, 1]``.
    """
    parent_list = [int(p) for p in parents.tolist()]
    offsets = joints.clone()
    offsets[:, 1:] = joints[:, 1:] - joints[:, parent_list[1:]]  # (B, J, 3) bone vectors
    local = _homogeneous(rot_mats, offsets)  # (B, J, 4, 4)
    chain = [local[:, 0]]
    for j in range(1, len(parent_list)):
        chain.append(chain[parent_list[j]] @ local[:, j])
    world = torch.stack(chain, dim=1)  # (B, J, 4, 4)
    posed_joints = world[..., :3, 3]
    # Undo the rest location: x -> R (x - J_rest) + posed joint.
    shift = (world[..., :3, :3] @ joints[..., None]).squeeze(-1)  # (B, J, 3)
    rel_transforms = _homogeneous(world[..., :3, :3], posed_joints - shift)
    return posed_joints, rel_transforms


def pose_features(rot_mats: torch.Tensor) -> torch.Tensor:
    """Pose-corrective features: flattened ``R_j - I`` of every non-root joint.

    Args:
        rot_mats: (B, J, 3, 3).
    Returns:
        (B, 9 * (J - 1)).
    """
    eye = torch.eye(3, dtype=rot_mats.dtype, device=rot_mats.device)
    return (rot_mats[:, 1:] - eye).reshape(rot_mats.shape[0], -1)


def lbs(
    betas: torch.Tensor,
    pose: torch.Tensor,
    v_template: torch.Tensor,
    shapedirs: torch.Tensor,
    posedirs: torch.Tensor,
    J_regressor: torch.Tensor,
    parents: torch.Tensor,
    lbs_weights: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Blend shapes, pose correctives and linear blend skinning.

    Args:
        betas: (B, K) blend-shape coefficients.
        pose: (B, J * 3) axis-angle rotation of every joint (root first).
        v_template: (V, 3) or (B, V, 3) rest-pose template.
        shapedirs: (V, 3, K) blend shapes.
        posedirs: (9 * (J - 1), V * 3) pose correctives: a file's (V, 3, P) array reshaped to
            (V * 3, P) and transposed.
        J_regressor: (J, V) dense joint regressor.
        parents: (J,) long kinematic tree (``-1`` for the root).
        lbs_weights: (V, J) skinning weights (rows sum to 1).
    Returns:
        vertices: (B, V, 3) posed vertices.
        joints: (B, J, 3) posed joints.
    """
    batch = betas.shape[0]
    v_shaped = v_template + blend_shapes(betas, shapedirs)  # (B, V, 3)
    rest_joints = vertices2joints(J_regressor, v_shaped)  # (B, J, 3)
    rot_mats = rodrigues(pose.reshape(batch, -1, 3))  # (B, J, 3, 3)
    pose_offsets = (pose_features(rot_mats) @ posedirs).reshape(batch, -1, 3)  # (B, V, 3)
    v_posed = v_shaped + pose_offsets
    joints, rel_transforms = batch_rigid_transform(rot_mats, rest_joints, parents)
    per_vertex = torch.einsum("vj,bjmn->bvmn", lbs_weights, rel_transforms)  # (B, V, 4, 4)
    vertices = (per_vertex[..., :3, :3] @ v_posed[..., None]).squeeze(-1) + per_vertex[..., :3, 3]
    return vertices, joints
