import numpy as np
import pytest
from scipy.ndimage import binary_dilation

from ofer.data import occluders
from ofer.errors import OferError

pytestmark = pytest.mark.skipif(not occluders.emoji_available(), reason="fonts-noto-color-emoji is not installed")


def fake_face(size=160):
    """A flat grey picture with plausible iBUG-68 landmark positions (a face of ~100 px width)."""
    t = np.linspace(-np.pi * 0.9, 0, 17)
    jaw = np.c_[80 + 50 * np.cos(t + np.pi * 0.05), 80 - 60 * np.sin(t)][::-1]
    rng = np.random.default_rng(0)
    inner = np.c_[rng.uniform(50, 110, 51), rng.uniform(55, 125, 51)]
    lmk = np.concatenate([jaw, inner])
    ring = np.c_[[-10, -4, 4, 10, 4, -4], [0, -3, -3, 0, 3, 3]]  # outer corner, top, inner corner, bottom
    lmk[36:42] = np.array([55, 70]) + ring
    lmk[42:48] = np.array([105, 70]) + ring[[3, 2, 1, 0, 5, 4]]
    lmk[48:60] = [80, 115]
    lmk[30] = [80, 95]
    lmk[8] = [80, 140]
    face = np.zeros((size, size), bool)
    face[50:145, 30:130] = True
    return np.full((size, size, 3), 128, np.uint8), lmk, face


def test_emoji_render_is_rgba_with_alpha():
    art = occluders.render_emoji("\u270B\U0001F3FD")
    assert art.ndim == 3 and art.shape[2] == 4
    assert art[..., 3].max() == 255 and (art[..., 3] == 0).any()


@pytest.mark.parametrize("category", ["hand", "object", "random", "eyes"])
def test_occluders_cover_part_of_the_face_and_change_only_masked_pixels(category):
    image, lmk, face = fake_face()
    for seed in range(6):
        result = occluders.occlude_face(image, lmk, face, category, np.random.default_rng(seed))
        assert result.category == category and result.mask.shape == image.shape[:2]
        covered = (result.mask & face).sum() / face.sum()
        assert 0.0 < covered < 1.0
        changed = np.abs(result.image.astype(int) - image).sum(-1) > 180  # strong change: opaque art
        near_mask = binary_dilation(result.mask, iterations=2)  # anti-aliased edges
        assert (changed & ~near_mask).sum() < 0.005 * changed.size


def test_eyewear_covers_both_eyes_and_not_the_mouth():
    image, lmk, face = fake_face()
    kinds = set()
    for seed in range(12):
        result = occluders.occlude(image, lmk, "eyes", np.random.default_rng(seed))
        x, y = np.round(lmk[36:48]).astype(int).T
        assert result.mask[y, x].mean() > 0.9, result.kind
        mx, my = np.round(lmk[48:60]).astype(int).T
        assert not result.mask[my, mx].any(), result.kind
        kinds.add(result.kind.split(" ")[0])
    assert kinds == {"sunglasses", "eye_band", "emoji"}


def test_a_mix_without_eyes_draws_as_before_eyes_existed():
    from ofer.data.sample import category_weights

    names, weights = category_weights({"hand": 0.3, "object": 0.35, "random": 0.25, "none": 0.1})
    assert names == ["hand", "object", "random", "none"] and np.allclose(weights, [0.3, 0.35, 0.25, 0.1])
    names, _ = category_weights({"eyes": 1.0, "hand": 1.0})
    assert names == ["hand", "eyes"]


def test_same_seed_same_occluder():
    image, lmk, face = fake_face()
    a = occluders.occlude_face(image, lmk, face, "object", np.random.default_rng(7))
    b = occluders.occlude_face(image, lmk, face, "object", np.random.default_rng(7))
    assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask) and a.kind == b.kind


def test_none_and_unknown():
    image, lmk, face = fake_face()
    result = occluders.occlude(image, lmk, "none", np.random.default_rng(0))
    assert not result.mask.any() and np.array_equal(result.image, image)
    with pytest.raises(OferError, match="unknown occluder category"):
        occluders.occlude(image, lmk, "paint", np.random.default_rng(0))


def test_textures_have_requested_size():
    rng = np.random.default_rng(3)
    for _ in range(10):
        assert occluders.random_texture(20, 30, rng).shape == (20, 30, 3)


def test_every_drawn_kind_is_indexed_and_grouped():
    image, lmk, _ = fake_face()
    expected = {"hand": {"hand"}, "eyes": {"glasses"}, "random": {"random"}, "none": {"unoccluded"},
                "object": {"glasses", "mask_scarf", "object"}}
    seen = set()
    for category, groups in expected.items():
        for seed in range(25):
            kind = occluders.occlude(image, lmk, category, np.random.default_rng(seed)).kind
            assert occluders.OCCLUDER_KINDS[occluders.kind_index(kind)] == kind
            assert occluders.kind_group(kind) in groups, (category, kind)
            seen.add(occluders.kind_group(kind))
    assert seen == set(occluders.KIND_GROUPS)
    assert occluders.kind_group("emoji U+1F9E3") == "mask_scarf" and occluders.kind_group("emoji U+1F576") == "glasses"
