"""The process-wide kernel backend switch."""
import pytest
import torch

import smae.kernels as K
from smae.kernels import backend


def test_setter_and_context_manager_restore_previous():
    before = K.get_backend()
    with K.use_backend("torch"):
        assert K.get_backend() == "torch"
        with K.use_backend("triton"):
            assert K.get_backend() == "triton"
        assert K.get_backend() == "torch"
    assert K.get_backend() == before
    K.set_backend("auto")
    assert K.get_backend() == "auto"
    K.set_backend(before)


def test_unknown_backend_is_rejected_with_choices():
    with pytest.raises(ValueError, match="auto, triton, torch"):
        K.set_backend("cuda")


def test_env_var_sets_the_default(monkeypatch):
    monkeypatch.setenv("SMAE_TEST_SWITCH", "torch")
    assert backend.BackendSwitch("SMAE_TEST_SWITCH", ("auto", "torch")).get() == "torch"
    monkeypatch.setenv("SMAE_TEST_SWITCH", "bogus")
    with pytest.raises(ValueError, match="SMAE_TEST_SWITCH"):
        backend.BackendSwitch("SMAE_TEST_SWITCH", ("auto", "torch"))


def test_auto_falls_back_and_torch_never_uses_triton():
    with K.use_backend("auto"):
        assert backend.use_triton("op", ["some reason"]) is False
        assert backend.use_triton("op", []) is True
    with K.use_backend("torch"):
        assert backend.use_triton("op", []) is False


def test_forced_triton_on_cpu_without_interpreter_lists_every_reason(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    pred, imgs, mask = torch.randn(1, 4, 12), torch.randn(1, 3, 4, 4), torch.ones(1, 4)
    with K.use_backend("triton"), pytest.raises(K.BackendUnavailable) as info:
        K.masked_patch_loss(pred, imgs, mask, patch_size=2)
    message = str(info.value)
    assert "masked_patch_loss" in message
    assert message.count("not CUDA") == 3, message  # one line per input tensor


def test_device_reasons_respect_the_interpreter(monkeypatch):
    cpu = torch.zeros(1)
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert backend.triton_device_reasons(cpu) == []
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    assert "not CUDA" in backend.triton_device_reasons(cpu)[0]
