"""Condition normalisation: render-domain projection of the identity embedding, then standardisation."""

import pytest
import torch

from ofer.errors import CheckpointError
from ofer.pipeline.normalization import ConditionNormalizer, Normalizer, domain_directions, remove_directions


def _renders(n=400, dim=16, seed=0):
    """Unit embeddings with a strong shared component along e0 (as ArcFace of renders)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, dim, generator=g) * 0.2
    x[:, 0] += 1.0
    return x / x.norm(dim=1, keepdim=True)


def test_domain_direction_is_the_shared_component_with_a_fixed_sign():
    d = domain_directions(_renders(), 1)
    assert d.shape == (1, 16)
    assert float(d[0, 0]) > 0.99  # the mean direction e0, pointing along the data
    assert domain_directions(_renders(), 0).shape == (0, 16)


def test_remove_directions_hand_computed_case():
    x = torch.tensor([[3.0, 4.0, 0.0], [0.0, 0.0, 0.0], [5.0, 0.0, 0.0]])
    out = remove_directions(x, torch.tensor([[1.0, 0.0, 0.0]]))
    torch.testing.assert_close(out, torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]))


def test_projection_brings_renders_and_photos_to_the_same_scale():
    renders = _renders()
    photos = torch.nn.functional.normalize(torch.randn(200, 16, generator=torch.Generator().manual_seed(1)), dim=1)
    plain = Normalizer.fit(renders)
    projected = ConditionNormalizer.fit(renders, identity_dim=16, num_directions=1)
    plain_ratio = plain(photos).pow(2).sum(1).median() / plain(renders).pow(2).sum(1).median()
    projected_ratio = projected(photos).pow(2).sum(1).median() / projected(renders).pow(2).sum(1).median()
    assert plain_ratio > 5.0  # photos are far outside the render distribution
    assert 0.5 < projected_ratio < 2.0


def test_only_the_identity_part_is_projected_and_round_trip():
    cond = torch.cat([_renders(100), torch.randn(100, 3, generator=torch.Generator().manual_seed(2))], dim=1)
    norm = ConditionNormalizer.fit(cond, identity_dim=16, num_directions=2)
    torch.testing.assert_close(norm.project(cond)[:, 16:], cond[:, 16:])
    again = ConditionNormalizer.from_dict(norm.to_dict(), "here")
    torch.testing.assert_close(again(cond), norm(cond), rtol=1e-4, atol=1e-4)
    assert again.identity_dim == 16 and again.directions.shape == (2, 16)


def test_old_runs_without_directions_load_as_plain_standardisation():
    x = torch.randn(30, 5)
    data = Normalizer.fit(x).to_dict("cond")
    norm = ConditionNormalizer.from_dict(data, "old")
    torch.testing.assert_close(norm(x), Normalizer.fit(x)(x))


def test_inconsistent_directions_are_refused():
    data = {**Normalizer.fit(torch.randn(30, 5)).to_dict("cond"), "cond_domain_directions": [[1.0, 0.0]],
            "cond_identity_dim": 4}
    with pytest.raises(CheckpointError, match="inconsistent condition normalisation"):
        ConditionNormalizer.from_dict(data, "run/idgen")
