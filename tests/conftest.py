import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("OFER_SHARED", REPO.parent / "shared"))
ICT_NPZ = SHARED / "assets/facemodels/ict_facekit/ict_facekit_v1_face_f16.npz"
FLAME_BASIS_NPZ = SHARED / "assets/facemodels/flame2023_open_id60/flame_basis.npz"


def _session_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.getbasetemp() / "ofer-cache"


@pytest.fixture(scope="session", autouse=True)
def ofer_cache(tmp_path_factory):
    """A private cache per test session (the default head is converted once, into it)."""
    path = _session_cache(tmp_path_factory)
    old = os.environ.get("OFER_CACHE_DIR")
    os.environ["OFER_CACHE_DIR"] = str(path)
    yield path
    if old is None:
        os.environ.pop("OFER_CACHE_DIR", None)
    else:
        os.environ["OFER_CACHE_DIR"] = old


@pytest.fixture(scope="session")
def default_model(ofer_cache):
    from ofer import load_face_model

    return load_face_model("default")


def require(path: Path):
    if not path.exists():
        pytest.skip(f"development asset not found: {path} (needs ../shared beside the repository)")
    return path
