"""torch.compile traces the whole model: no graph break from the kernel or attention dispatch,
and the Triton paths (custom ops) compile with their fake and autograd registrations. Each
custom op's own opcheck lives with its kernel's tests (test_masking.py, test_patch_loss.py)."""
from __future__ import annotations

import pytest
import torch

import smae
from kernel_cases import cuda
from pretrain_fixtures import small_config
from smae.kernels import use_backend
from smae.models import SiamMAE


@pytest.fixture
def tiny_inputs(device):
    torch.manual_seed(0)
    model = smae.build_model("tiny").to(device)
    generator = torch.Generator().manual_seed(1)
    f1, f2 = (torch.randn(2, 3, 64, 64, generator=generator).to(device) for _ in range(2))
    yield model, f1, f2
    torch._dynamo.reset()


def _graph_breaks(model, f1, f2) -> tuple[int, list[str]]:
    torch._dynamo.reset()
    explanation = torch._dynamo.explain(model)(f1, f2)
    return explanation.graph_break_count, [str(reason.reason)[:300] for reason in explanation.break_reasons]


def test_tiny_model_has_no_graph_break_with_the_reference_kernels(tiny_inputs):
    with use_backend("torch"):
        assert _graph_breaks(*tiny_inputs) == (0, [])


@pytest.mark.slow
@cuda
def test_tiny_model_has_no_graph_break_with_the_triton_kernels(tiny_inputs):
    # On the CPU the kernels run in Triton's interpreter (TRITON_INTERPRET=1, conftest): the custom
    # ops are opaque to dynamo, so it never traces into Triton's launcher.
    with use_backend("triton"):
        assert _graph_breaks(*tiny_inputs) == (0, [])


@pytest.mark.slow
@cuda
def test_compiled_triton_ops_match_eager_forward_and_backward(device):
    """aot_eager: dynamo and AOTAutograd trace the custom ops through their fake implementations
    and autograd formulas (what inductor does too), without inductor's code generation. A small
    model: the interpreter runs every kernel of both passes twice."""
    torch.manual_seed(0)
    model = SiamMAE(small_config().model).to(device)
    f1, f2 = (torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(seed)).to(device) for seed in (1, 2))
    with use_backend("triton"):
        torch.manual_seed(2)
        loss, pred, _ = model(f1, f2)
        grads = torch.autograd.grad(loss, [p for p in model.parameters() if p.requires_grad], allow_unused=True)
        torch._dynamo.reset()
        compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
        torch.manual_seed(2)  # the same masks
        loss_c, pred_c, _ = compiled(f1, f2)
        grads_c = torch.autograd.grad(loss_c, [p for p in model.parameters() if p.requires_grad], allow_unused=True)
    torch.testing.assert_close(loss_c, loss)
    torch.testing.assert_close(pred_c, pred)
    for got, want in zip(grads_c, grads):
        assert (got is None) == (want is None)
        if want is not None:
            torch.testing.assert_close(got, want)
    torch._dynamo.reset()
