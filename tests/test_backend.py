"""The process-wide kernel backend switch."""
import os
import subprocess
import sys

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
    switch = backend.BackendSwitch("SMAE_TEST_SWITCH", ("auto", "torch"))  # not checked before use
    with pytest.raises(ValueError, match=r"SMAE_TEST_SWITCH='bogus' is not one of auto, torch"):
        switch.get()


@pytest.mark.slow  # two subprocesses that import torch
def test_bad_switches_break_neither_info_nor_imports_and_stop_training_first(tmp_path):
    env = {**os.environ, "SMAE_KERNELS": "bogus", "SMAE_ATTENTION": "flash"}
    info = subprocess.run([sys.executable, "-m", "smae", "info"], env=env, capture_output=True, text=True)
    assert info.returncode == 0, info.stderr  # it imported smae.kernels and reports both
    assert "error: SMAE_KERNELS='bogus' is not one of auto, triton, torch" in info.stdout
    assert "error: SMAE_ATTENTION='flash' is not one of auto, xformers, sdpa, math" in info.stdout
    data = tmp_path / "videos"
    data.mkdir()
    pretrain = subprocess.run([sys.executable, "-m", "smae", "pretrain", "--preset", "tiny", "--data", str(data),
                               "--out", str(tmp_path / "run")], env=env, capture_output=True, text=True)
    assert pretrain.returncode == 2 and pretrain.stderr.count("\n") == 1 and "SMAE_KERNELS='bogus'" in pretrain.stderr
    assert not (tmp_path / "run").exists()  # stopped before writing anything


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
