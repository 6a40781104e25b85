"""Dispatch on GPUs the kernels cannot fully serve, on the CPU: each target's properties are fed
to `torch.cuda.get_device_properties`, and the inputs are fake CUDA tensors (FakeTensorMode: a
device and a dtype, no memory, no CUDA). Forced `triton` must list why, each reason once; auto
falls back to PyTorch; `describe_gpu` (the `smae info` line) says the same; pre-training picks
bf16 autocast where the chip has bf16 and fp16 with the gradient scaler where it does not."""
import dataclasses
import types

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from smae.kernels import BackendUnavailable, describe_gpu, gather_visible, masked_patch_loss, propagate_labels, use_backend
from smae.kernels import gpus
from smae.kernels.gpus import TARGETS
from smae.train.loop import autocast_dtype

# Imported here, under conftest's TRITON_INTERPRET=1: the `on_gpu` fixture unsets it, and a kernel
# module imported for the first time inside it would be built for a GPU and fail in later tests.
import smae.kernels.masking_triton  # noqa: F401
import smae.kernels.patch_loss_triton  # noqa: F401
import smae.kernels.propagation_triton  # noqa: F401

BF16_REASON = "bf16 arithmetic needs sm_80"
FMA_REASON = "tl.dot to FMA before sm_80"


def properties_of(gpu):
    return types.SimpleNamespace(
        name=gpu.name, major=gpu.capability // 10, minor=gpu.capability % 10, multi_processor_count=gpu.processors,
        shared_memory_per_multiprocessor=gpu.shared_per_sm, shared_memory_per_block_optin=gpu.shared_per_block,
        regs_per_multiprocessor=gpu.registers_per_sm, max_threads_per_multi_processor=gpu.threads_per_sm)


@pytest.fixture
def on_gpu(monkeypatch):
    """Returns a function that makes `gpu` the (only) CUDA device the dispatch sees."""
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)  # dispatch as on a GPU machine

    def use(gpu):
        monkeypatch.setattr(gpus, "_SEEN", {})
        monkeypatch.setattr(torch.cuda, "get_device_properties", lambda index: properties_of(gpu))
        monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (gpu.capability // 10, gpu.capability % 10))
    return use


def forced_triton_error(call) -> str:
    with use_backend("triton"), pytest.raises(BackendUnavailable) as raised:
        call()
    return str(raised.value)


def masking_call(dtype):
    tokens = torch.empty(2, 16, 8, device="cuda", dtype=dtype)
    ids = torch.empty(2, 3, device="cuda", dtype=torch.int64)
    pos = torch.empty(16, 8, device="cuda", dtype=dtype)
    return lambda: gather_visible(tokens, ids, pos)


def loss_call(dtype):
    pred = torch.empty(2, 4, 48, device="cuda", dtype=dtype)
    imgs = torch.empty(2, 3, 8, 8, device="cuda", dtype=dtype)
    mask = torch.empty(2, 4, device="cuda", dtype=torch.bool)
    return lambda: masked_patch_loss(pred, imgs, mask, patch_size=4)


def propagation_call(dtype, channels=16):
    query = torch.empty(20, channels, device="cuda", dtype=dtype)
    keys = torch.empty(2, 20, channels, device="cuda", dtype=dtype)
    labels = torch.empty(2, 20, 3, device="cuda", dtype=dtype)
    return lambda: propagate_labels(query, keys, labels, grid=(4, 5), topk=3, temperature=0.1, radius=2)


@pytest.mark.parametrize("target", ["sm_70", "sm_75"])
@pytest.mark.parametrize("make_call", [masking_call, loss_call, propagation_call])
def test_bf16_before_sm80_is_refused_once(target, make_call, on_gpu):
    on_gpu(TARGETS[target])
    with FakeTensorMode(allow_non_fake_inputs=True):
        message = forced_triton_error(make_call(torch.bfloat16))
    assert message.count(BF16_REASON) == 1, message
    assert TARGETS[target].name in message


@pytest.mark.parametrize("target", list(TARGETS))
def test_propagation_runs_fused_from_sm80(target, on_gpu):
    """Before sm_80 forced triton names the FMA reason; from sm_80 no GPU reason at all."""
    from smae.kernels.propagation import _triton_reasons

    on_gpu(TARGETS[target])
    with FakeTensorMode(allow_non_fake_inputs=True):
        query, keys, labels = torch.empty(20, 16, device="cuda"), torch.empty(2, 20, 16, device="cuda"), torch.empty(2, 20, 3, device="cuda")
        reasons = _triton_reasons(query, keys, labels, topk=3)
    if TARGETS[target].capability < 80:
        assert len(reasons) == 1 and FMA_REASON in reasons[0], reasons
    else:
        assert reasons == []


@pytest.mark.parametrize("target", list(TARGETS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_training_kernels_take_fp32_and_fp16_on_every_target(target, dtype, on_gpu):
    from smae.kernels import masking, patch_loss

    on_gpu(TARGETS[target])
    with FakeTensorMode(allow_non_fake_inputs=True):
        tokens, ids = torch.empty(2, 16, 8, device="cuda", dtype=dtype), torch.empty(2, 3, device="cuda", dtype=torch.int64)
        pred, imgs = torch.empty(2, 4, 48, device="cuda", dtype=dtype), torch.empty(2, 3, 8, 8, device="cuda", dtype=dtype)
        mask = torch.empty(2, 4, device="cuda", dtype=torch.bool)
        assert masking._triton_reasons(ids, tokens=tokens) == []
        assert patch_loss._triton_reasons(pred, imgs, mask) == []


def test_a_chip_triton_cannot_build_for_takes_nothing(on_gpu):
    pascal = dataclasses.replace(TARGETS["sm_70"], name="Tesla P100", capability=60, processors=56)
    on_gpu(pascal)
    with FakeTensorMode(allow_non_fake_inputs=True):
        message = forced_triton_error(masking_call(torch.float32))
    assert message.count("Tesla P100 is sm_60; Triton builds for sm_70 and newer") == 1, message
    assert "every kernel on PyTorch" in describe_gpu("cuda")


def test_too_little_shared_memory_is_a_reason(on_gpu):
    tiny = dataclasses.replace(TARGETS["sm_86"], name="tiny", shared_per_sm=32 * 1024, shared_per_block=24 * 1024)
    on_gpu(tiny)
    with FakeTensorMode(allow_non_fake_inputs=True):
        message = forced_triton_error(propagation_call(torch.float16, channels=384))
    assert "shared memory per program" in message and "24 KiB per block" in message, message


def test_auto_falls_back_to_pytorch(on_gpu):
    """The fallback computes (on fake tensors: shapes only) instead of raising."""
    on_gpu(TARGETS["sm_75"])
    with FakeTensorMode(allow_non_fake_inputs=True), use_backend("auto"):
        tokens = torch.empty(2, 16, 8, device="cuda", dtype=torch.bfloat16)
        visible = gather_visible(tokens, torch.zeros(2, 3, device="cuda", dtype=torch.int64))
    assert (visible.shape, visible.dtype) == ((2, 3, 8), torch.bfloat16)


@pytest.mark.parametrize("target", list(TARGETS))
def test_info_line_says_what_each_gpu_gets(target, on_gpu):
    gpu = TARGETS[target]
    on_gpu(gpu)
    line = describe_gpu("cuda")
    assert line.startswith(f"{gpu.name} ({target}, {gpu.processors} SMs): Triton kernels for fp32, fp16")
    assert ("bf16 on PyTorch" in line) == (gpu.capability < 80)
    assert ("propagate_labels fused" in line) == (gpu.capability >= 80)


@pytest.mark.parametrize("target", list(TARGETS))
def test_pretraining_precision_follows_the_chip(target, on_gpu):
    """auto: bf16 where the chip has it, else fp16 (the training session turns its GradScaler on
    exactly for fp16); explicit choices are kept; CPU stays fp32."""
    on_gpu(TARGETS[target])
    expected = torch.bfloat16 if TARGETS[target].capability >= 80 else torch.float16
    assert autocast_dtype("auto", torch.device("cuda", 0)) == expected
    assert autocast_dtype("fp32", torch.device("cuda", 0)) is None
    assert autocast_dtype("auto", torch.device("cpu")) is None
