"""The torch ArcFace (FOCUS / ORN perceptual network) against onnxruntime; the ONNX graph runner's refusals."""

import numpy as np
import pytest
import torch

from ofer.frontend.encoders.arcface import ArcFaceEncoder
from ofer.frontend.encoders.arcface_torch import torch_arcface
from ofer.networks.onnx_graph import OnnxGraph, OnnxGraphError


@pytest.fixture(scope="module")
def crops():
    rng = np.random.default_rng(0)
    smooth = rng.integers(0, 256, (4, 14, 14, 3)).repeat(8, 1).repeat(8, 2)  # 112 px, not white noise
    return np.clip(smooth + rng.normal(0, 8, smooth.shape), 0, 255).astype(np.uint8)


def test_embedding_matches_onnxruntime(crops):
    expected = ArcFaceEncoder().embed(crops)
    images = torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 255.0
    with torch.no_grad():
        got = torch_arcface()(images).embedding.numpy()
    assert np.abs(got - expected).max() < 1e-4
    assert np.abs(got[0] - expected[1]).max() > 1e-2  # the images differ, so would a wrong pairing


def test_gradients_reach_the_input_and_the_weights_stay_frozen(crops):
    net = torch_arcface()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    net.train()
    assert not net.training and not any(p.requires_grad for p in net.parameters())
    images = (torch.from_numpy(crops[:2]).permute(0, 3, 1, 2).float() / 255.0).requires_grad_()
    out = net(images)
    assert out.shallow.shape == (2, 128, 56, 56)
    (out.embedding[0] @ out.embedding[1] + out.shallow.mean()).backward()
    assert images.grad is not None and images.grad.abs().sum() > 0
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_a_batch_of_one_equals_its_row_in_a_batch(crops):
    images = torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 255.0
    with torch.no_grad():
        together = torch_arcface()(images).embedding
        alone = torch_arcface()(images[2:3]).embedding
    torch.testing.assert_close(alone[0], together[2], atol=1e-5, rtol=0)


def test_unsupported_operator_is_named(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node("Softmax", ["x"], ["y"], name="soft")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])])
    onnx.save(helper.make_model(graph), tmp_path / "soft.onnx")
    with pytest.raises(OnnxGraphError, match="operator Softmax"):
        OnnxGraph.from_onnx(tmp_path / "soft.onnx")


def test_hand_computed_graph(tmp_path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.array([[2.0, 0.0], [0.0, -1.0]], np.float32), "w")
    slope = numpy_helper.from_array(np.array([0.5], np.float32), "s")
    nodes = [helper.make_node("Gemm", ["x", "w"], ["h"], transB=1), helper.make_node("PRelu", ["h", "s"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])], [w, slope])
    onnx.save(helper.make_model(graph), tmp_path / "g.onnx")
    net = OnnxGraph.from_onnx(tmp_path / "g.onnx")
    out = net(torch.tensor([[1.0, 3.0]]), keep=("h", "y"))
    assert out["h"].tolist() == [[2.0, -3.0]] and out["y"].tolist() == [[2.0, -1.5]]
    with pytest.raises(KeyError, match="no tensor named z"):
        net(torch.zeros(1, 2), keep=("z",))
