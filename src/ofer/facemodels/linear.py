"""Generic linear face model read from an ``.npz`` file.

File keys (arrays; only the first three are required)::

    v_template        (V, 3)   neutral mean shape
    faces             (F, 3)   triangles
    shapedirs         (V, 3, S) identity basis (displacement for coefficient +1)
    exprdirs          (V, 3, E) expression basis (default: none, E = 0)
    shapedirs_neg     (V, 3, S) optional: displacement for coefficient -1 (piecewise-linear
                      identity targets, as MakeHuman's incr/decr pairs); default -shapedirs
    shape_names, expression_names   (S,), (E,) strings
    shape_std, shape_lo, shape_hi   (S,) prior: N(0, std) clipped to [lo, hi]; default N(0,1) in [-3,3]
    expression_prior  "blendshape" (ARKit-like weights in [0,1], a few active at a time) or
                      "gaussian" (N(0, expression_std)); default "blendshape" if names are given
    expression_std    (E,) for the gaussian expression prior
    lmk_faces_idx, lmk_bary         (68,), (68, 3) iBUG-68 landmark embedding
    front_mask        (V,) bool face-region vertices (or front_indices (K,) int)
    part              (V,) int: 0 skin, 1 left eyeball, 2 right eyeball, 3 teeth (default: all skin)
    rotation_center   (3,) pivot of the global rotation (default: template centroid)
    units             "m" | "dm" | "cm" | "mm" (default: guessed from the template's size)

Vertices (metres)::

    v = v_template + sum_k [relu(b_k) shapedirs_k + relu(-b_k) shapedirs_neg_k] + exprdirs @ psi
    v = R(pose) (v - c) + c
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..errors import FaceModelError
from ..io.numpy_files import NPZ_ERRORS, numpy_error
from ..geometry import rodrigues
from .base import FaceModel, PriorSample

UNIT_SCALE = {"m": 1.0, "dm": 0.1, "cm": 0.01, "mm": 0.001}


def guess_units(v_template: np.ndarray) -> str:
    """Guess the length unit of a head/face template from its largest bounding-box side."""
    extent = float(np.ptp(v_template, axis=0).max())
    if extent < 1.0:
        return "m"
    if extent < 10.0:
        return "dm"
    if extent < 100.0:
        return "cm"
    return "mm"


def _side_key(name: str) -> tuple[str, str]:
    """Split an ARKit-style name into (base, side): 'eyeBlinkLeft' -> ('eyeBlink', 'L')."""
    for suffix, side in (("Left", "L"), ("Right", "R"), ("_L", "L"), ("_R", "R")):
        if name.endswith(suffix):
            return name[: -len(suffix)], side
    return name, ""


def blendshape_groups(names: list[str]) -> list[list[int]]:
    """Group left/right variants of the same blendshape so that they can be activated together."""
    groups: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        groups.setdefault(_side_key(name)[0], []).append(i)
    return list(groups.values())


def sample_blendshape_weights(
    n: int,
    names: list[str],
    generator: Optional[torch.Generator] = None,
    mean_active: float = 3.0,
    inactive: tuple[str, ...] = (),
) -> torch.Tensor:
    """Random ARKit-style expressions: a few active blendshape groups with weights in [0, 1].

    Each left/right group is active with probability ``mean_active / #groups``; an active group
    gets an amplitude ~ U(0.25, 1) and each side of it a factor ~ U(0.7, 1) (mild asymmetry).
    ``jawOpen`` (if present) is active with probability 0.35 on top, amplitude ~ U(0, 0.6).

    Returns:
        (n, E) float tensor.
    """
    groups = [g for g in blendshape_groups(names) if names[g[0]] not in inactive]
    weights = torch.zeros(n, len(names))
    p = min(1.0, mean_active / max(1, len(groups)))
    active = torch.rand(n, len(groups), generator=generator) < p
    amplitude = 0.25 + 0.75 * torch.rand(n, len(groups), generator=generator)
    side = 0.7 + 0.3 * torch.rand(n, len(names), generator=generator)
    for gi, members in enumerate(groups):
        for i in members:
            weights[:, i] = active[:, gi] * amplitude[:, gi] * side[:, i]
    if "jawOpen" in names:
        j = names.index("jawOpen")
        extra = (torch.rand(n, generator=generator) < 0.35) * 0.6 * torch.rand(n, generator=generator)
        weights[:, j] = torch.maximum(weights[:, j], extra)
    return weights.clamp_(0.0, 1.0)


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise FaceModelError(f"npz: {path}: file not found")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except NPZ_ERRORS as exc:
        raise FaceModelError(f"npz: {path}: not a readable .npz file ({numpy_error(exc)})") from None
    for key in ("v_template", "faces", "shapedirs"):
        if key not in arrays:
            raise FaceModelError(f"npz: {path}: missing key '{key}'")
    arrays.setdefault("exprdirs", np.zeros(arrays["v_template"].shape + (0,), np.float32))
    return arrays


class LinearFaceModel(FaceModel):
    """Linear (or piecewise-linear in identity) blendshape model with a global rotation.

    ``pose`` is (B, 3): an axis-angle rotation of the whole head about ``rotation_center``.
    There is no jaw joint (``jaw_dim = 0``): the expression generator's code is the expression,
    and :meth:`split_code` returns a zero pose.
    """

    name = "linear"

    def __init__(self, arrays: dict[str, np.ndarray], spec: str, name: Optional[str] = None,
                 options: Optional[dict] = None):
        for key in ("v_template", "shapedirs", "exprdirs", "faces"):
            if arrays[key].dtype.kind not in "biuf":
                raise FaceModelError(f"{spec}: {key} must hold numbers, got dtype {arrays[key].dtype}")
            if not np.isfinite(arrays[key]).all():
                raise FaceModelError(f"{spec}: {key} contains NaN or infinite values")
        v_template = arrays["v_template"].astype(np.float32)
        if v_template.ndim != 2 or v_template.shape[1] != 3 or not len(v_template):
            raise FaceModelError(f"{spec}: v_template must be (V, 3) with V > 0, got {v_template.shape}")
        units = str(arrays["units"]) if "units" in arrays else guess_units(v_template)
        if units not in UNIT_SCALE:
            raise FaceModelError(f"{spec}: unknown units {units!r} (use one of {sorted(UNIT_SCALE)})")
        scale = UNIT_SCALE[units]
        shapedirs = arrays["shapedirs"].astype(np.float32) * scale
        exprdirs = arrays["exprdirs"].astype(np.float32) * scale
        n_vertices = v_template.shape[0]
        if shapedirs.ndim != 3 or exprdirs.ndim != 3 or shapedirs.shape[:2] != (n_vertices, 3) or exprdirs.shape[:2] != (n_vertices, 3):
            raise FaceModelError(
                f"{spec}: shapedirs {shapedirs.shape} / exprdirs {exprdirs.shape} do not match v_template {v_template.shape}"
            )
        shape_dim, expression_dim = shapedirs.shape[2], exprdirs.shape[2]
        faces = torch.from_numpy(arrays["faces"].astype(np.int64))
        if faces.ndim != 2 or faces.shape[1] != 3 or not len(faces) or int(faces.max()) >= n_vertices or int(faces.min()) < 0:
            raise FaceModelError(f"{spec}: faces must be (F, 3) indices into {n_vertices} vertices, F > 0")
        front_mask = self._front_mask(arrays, n_vertices)
        lmk_idx = torch.from_numpy(arrays["lmk_faces_idx"].astype(np.int64)) if "lmk_faces_idx" in arrays else None
        lmk_bary = torch.from_numpy(arrays["lmk_bary"].astype(np.float32)) if "lmk_bary" in arrays else None
        super().__init__(
            spec=spec,
            faces=faces,
            lmk_faces_idx=lmk_idx,
            lmk_bary=lmk_bary,
            front_mask=front_mask,
            shape_dim=shape_dim,
            expression_dim=expression_dim,
            pose_dim=3,
            jaw_dim=0,
            shape_names=[str(s) for s in arrays["shape_names"]] if "shape_names" in arrays else None,
            expression_names=[str(s) for s in arrays["expression_names"]] if "expression_names" in arrays else None,
            options=options,
        )
        if name:
            self.name = name
        self.units_in_file = units
        self.register_buffer("v_template", torch.from_numpy(v_template * scale))
        self.register_buffer("shapedirs", torch.from_numpy(shapedirs))
        neg = arrays.get("shapedirs_neg")
        self.piecewise = neg is not None
        if neg is not None:
            self.register_buffer("shapedirs_neg", torch.from_numpy(neg.astype(np.float32) * scale))
        self.register_buffer("exprdirs", torch.from_numpy(exprdirs))
        centre = arrays["rotation_center"] * scale if "rotation_center" in arrays else v_template.mean(0) * scale
        self.register_buffer("rotation_center", torch.as_tensor(centre, dtype=torch.float32))
        self.register_buffer("shape_std", self._vector(arrays, "shape_std", shape_dim, 1.0))
        self.register_buffer("shape_lo", self._vector(arrays, "shape_lo", shape_dim, -3.0))
        self.register_buffer("shape_hi", self._vector(arrays, "shape_hi", shape_dim, 3.0))
        self.register_buffer("expression_std", self._vector(arrays, "expression_std", expression_dim, 1.0))
        default_prior = "blendshape" if "expression_names" in arrays else "gaussian"
        self.expression_prior = str(arrays.get("expression_prior", default_prior))
        part = arrays.get("part", np.zeros(n_vertices, dtype=np.int8))
        self.register_buffer("part", torch.from_numpy(part.astype(np.int64)), persistent=False)
        for key in ("mp_faces_idx", "mp_bary"):  # optional MediaPipe-478 embedding
            if key in arrays:
                self.register_buffer(key, torch.from_numpy(arrays[key]), persistent=False)

    @staticmethod
    def _vector(arrays: dict, key: str, dim: int, default: float) -> torch.Tensor:
        if key in arrays:
            return torch.as_tensor(arrays[key], dtype=torch.float32).reshape(dim)
        return torch.full((dim,), default)

    @staticmethod
    def _front_mask(arrays: dict, n_vertices: int) -> torch.Tensor:
        if "front_mask" in arrays:
            return torch.from_numpy(arrays["front_mask"].astype(bool))
        mask = torch.ones(n_vertices, dtype=torch.bool)
        if "front_indices" in arrays:
            mask[:] = False
            mask[torch.from_numpy(arrays["front_indices"].astype(np.int64))] = True
        return mask

    @property
    def num_vertices(self) -> int:
        return int(self.v_template.shape[0])

    def identity_offsets(self, shape: torch.Tensor) -> torch.Tensor:
        """(B, S) -> (B, V, 3) identity displacement (piecewise linear if the file has ``shapedirs_neg``)."""
        if not self.piecewise:
            return torch.einsum("bs,vcs->bvc", shape, self.shapedirs)
        pos = torch.einsum("bs,vcs->bvc", shape.clamp(min=0), self.shapedirs)
        return pos + torch.einsum("bs,vcs->bvc", (-shape).clamp(min=0), self.shapedirs_neg)

    def deform(self, shape: torch.Tensor, expression: torch.Tensor, pose: torch.Tensor):
        vertices = self.v_template + self.identity_offsets(shape)
        vertices = vertices + torch.einsum("be,vce->bvc", expression, self.exprdirs)
        if torch.any(pose != 0):
            rot = rodrigues(pose)  # (B, 3, 3)
            vertices = (vertices - self.rotation_center) @ rot.transpose(1, 2) + self.rotation_center
        return vertices, None

    def surface_points(self, shape: torch.Tensor, expression: torch.Tensor, pose: torch.Tensor,
                       faces_idx: torch.Tensor, bary: torch.Tensor) -> torch.Tensor:
        """As :meth:`FaceModel.surface_points`, from the bases interpolated at the L points (cached).

        Exact: barycentric interpolation commutes with the linear blend and the rigid pose.
        """
        template, shape_pos, shape_neg, expression_dirs = self._point_basis(faces_idx, bary)
        shape, expression, pose = (t.to(device=self.device, dtype=self.dtype) for t in (shape, expression, pose))
        points = template + torch.einsum("be,lce->blc", expression, expression_dirs)
        if shape_neg is None:
            points = points + torch.einsum("bs,lcs->blc", shape, shape_pos)
        else:
            points = points + torch.einsum("bs,lcs->blc", shape.clamp(min=0), shape_pos)
            points = points + torch.einsum("bs,lcs->blc", (-shape).clamp(min=0), shape_neg)
        if torch.any(pose != 0):
            rot = rodrigues(pose)
            points = (points - self.rotation_center) @ rot.transpose(1, 2) + self.rotation_center
        return points

    def _point_basis(self, faces_idx: torch.Tensor, bary: torch.Tensor):
        key = (tuple(faces_idx.tolist()), tuple(bary.reshape(-1).tolist()), self.v_template.device)
        cache = self.__dict__.setdefault("_point_bases", {})
        if key not in cache:
            corners = self.faces[faces_idx.to(self.device)]  # (L, 3)
            weights = bary.to(self.v_template)

            def interpolate(array):  # (V, 3, K) -> (L, 3, K)
                return torch.einsum("lkcs,lk->lcs", array[corners], weights)

            template = torch.einsum("lkc,lk->lc", self.v_template[corners], weights)
            negative = interpolate(self.shapedirs_neg) if self.piecewise else None
            cache[key] = (template, interpolate(self.shapedirs), negative, interpolate(self.exprdirs))
        return cache[key]

    def content_arrays(self) -> dict[str, torch.Tensor]:
        arrays = {"v_template": self.v_template, "shapedirs": self.shapedirs, "exprdirs": self.exprdirs,
                  "rotation_center": self.rotation_center}
        if self.piecewise:
            arrays["shapedirs_neg"] = self.shapedirs_neg
        return arrays

    def clamp_shape(self, shape: torch.Tensor) -> torch.Tensor:
        """(..., S) identity coefficients clipped to the prior's [shape_lo, shape_hi]."""
        self._check_last(shape, "shape", self.shape_dim)
        return torch.maximum(torch.minimum(shape, self.shape_hi.to(shape)), self.shape_lo.to(shape))

    def clamp_expression(self, code: torch.Tensor) -> torch.Tensor:
        """(..., E) codes: blendshape weights clipped to [0, 1]; a gaussian expression prior is left as is."""
        self._check_last(code, "code", self.code_dim)
        return code.clamp(0.0, 1.0) if self.expression_prior == "blendshape" else code

    def sample_prior(self, n: int, generator: Optional[torch.Generator] = None, expression: bool = False) -> PriorSample:
        shape = torch.randn(n, self.shape_dim, generator=generator) * self.shape_std.cpu()
        shape = torch.maximum(torch.minimum(shape, self.shape_hi.cpu()), self.shape_lo.cpu())
        expr = torch.zeros(n, self.expression_dim)
        if expression:
            if self.expression_prior == "blendshape":
                silent = tuple(name for name, s in zip(self.expression_names, self.expression_std.tolist()) if s == 0)
                expr = sample_blendshape_weights(n, self.expression_names, generator, inactive=silent)
            else:
                expr = torch.randn(n, self.expression_dim, generator=generator) * self.expression_std.cpu()
        pose = torch.zeros(n, self.pose_dim)
        return PriorSample(shape=shape.to(self.device), expression=expr.to(self.device), pose=pose.to(self.device))


def load_npz(path: str | Path, name: Optional[str] = None) -> LinearFaceModel:
    """Load a generic linear face model from ``path`` (see the module docstring for the keys).

    ``name`` overrides the model's display name (recorded in its ``options``).
    """
    path = Path(path).expanduser()
    options = {"name": str(name)} if name else {}
    return LinearFaceModel(_read_npz(path), spec=f"npz:{path}", name=name, options=options)
