"""Condition normalisation: render-domain projection of the identity embedding, then standardisation."""

import pytest
import torch

from ofer.errors import CheckpointError
from ofer.networks.normalization import ConditionNormalizer, Normalizer, domain_directions, remove_directions


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


@pytest.mark.parametrize(
    "data, message",
    [
        ({"cond_std": [1.0]}, "lacks normalisation 'cond_mean'"),
        ({"cond_mean": ["a", "b"], "cond_std": [1.0, 1.0]}, "'cond_mean' is not a list of numbers"),
        ({"cond_mean": [[0.0, 1.0], [2.0]], "cond_std": [1.0, 1.0]}, "'cond_mean' is not a list of numbers"),
        ({"cond_mean": [[0.0, 1.0]], "cond_std": [1.0, 1.0]}, "'cond_mean' must be a finite 1-D list"),
        ({"cond_mean": [0.0, 1.0], "cond_std": [1.0]}, "a mean and a positive std of one length, got 2 and 1"),
        ({"cond_mean": [0.0, 1.0], "cond_std": [1.0, 0.0]}, "positive std"),
        ({"cond_mean": [0.0, float("nan")], "cond_std": [1.0, 1.0]}, "finite"),
    ],
)
def test_bad_saved_normalisation_is_a_one_line_checkpoint_error(data, message):
    with pytest.raises(CheckpointError) as info:
        ConditionNormalizer.from_dict(data, "run/idgen")
    assert message in str(info.value) and str(info.value).startswith("run/idgen: ") and "\n" not in str(info.value)


def test_bad_saved_directions_are_checkpoint_errors():
    base = Normalizer.fit(torch.randn(30, 5)).to_dict("cond")
    with pytest.raises(CheckpointError, match="cond_identity_dim must be an integer"):
        ConditionNormalizer.from_dict({**base, "cond_domain_directions": [[1.0, 0.0]], "cond_identity_dim": "2"}, "r")
    with pytest.raises(CheckpointError, match="'cond_domain_directions' must be a finite 2-D list"):
        ConditionNormalizer.from_dict({**base, "cond_domain_directions": [1.0, 0.0]}, "r")
    with pytest.raises(CheckpointError, match="normalisation must be a mapping"):
        Normalizer.from_dict(None, "target", "r")


@pytest.mark.parametrize("network", ["idgen", "expgen", "idrank"])
def test_shipped_normalisation_loads(network):
    import json
    from importlib.resources import files

    data = json.loads((files("ofer") / "weights" / "default" / network / "config.json").read_text())
    norm = ConditionNormalizer.from_dict(data["normalization"], network)
    assert norm.identity_dim == 512 and norm.directions.shape[1] == 512
    assert len(norm.norm.mean) == data["net"]["cond_dim"]
    if network != "idrank":
        target = Normalizer.from_dict(data["normalization"], "target", network)
        assert len(target.mean) == data["net"]["input_dim"]


def test_normalizers_move_to_a_device():
    norm = ConditionNormalizer.fit(_renders(50), identity_dim=16, num_directions=1).to("meta")
    assert norm.directions.device.type == "meta" and norm.norm.mean.device.type == "meta"
    assert norm(torch.empty(3, 16, device="meta")).device.type == "meta"


def test_a_run_without_projection_keeps_its_identity_dim():
    norm = ConditionNormalizer.fit(_renders(50), identity_dim=16, num_directions=0)
    loaded = ConditionNormalizer.from_dict(norm.to_dict(), "r")
    assert loaded.identity_dim == 16 and loaded.directions.shape == (0, 16)
    cond = _renders(5)
    assert torch.equal(loaded(cond), norm(cond))
