"""Process-wide backend switches for the fused kernels and for attention.

Kernels: `SMAE_KERNELS=auto|triton|torch` (default auto), `set_backend(name)`, `use_backend(name)`.
- auto: the Triton kernel wherever it can run (CUDA tensors, or any tensor when
  TRITON_INTERPRET=1), the plain PyTorch reference otherwise.
- triton: forced; raises `BackendUnavailable` listing every reason when Triton cannot take the
  inputs, so a test can never pass on the fallback by accident.
- torch: always the reference.

Attention has its own switch with the same behaviour (`SMAE_ATTENTION=auto|xformers|sdpa|math`),
see `smae.kernels.attention`.

Decided once: a switch reads its environment variable on first use (so a bad value is a
ValueError naming the variable and the valid values when dispatch is first decided, never an
import error), and whether Triton is installed is looked up once, at import, without importing
it. Per call, dispatch only reads attributes, devices and dtypes, which `torch.compile` traces
without a graph break. Nothing here touches CUDA or imports Triton at import time.
"""
from __future__ import annotations

import contextlib
import importlib.util
import os
from typing import Iterator, Sequence

import torch

from .gpus import gpu_limits, gpu_reasons


class BackendUnavailable(RuntimeError):
    """A forced backend cannot take the given inputs; the message lists why."""


class BackendSwitch:
    """One named switch: a default from an environment variable, a setter and a context manager.

    The variable is read and checked on the first `get`, not at import, so that a bad value
    cannot stop `import smae` or `smae info`."""

    def __init__(self, env_var: str, choices: Sequence[str], default: str = "auto"):
        self.env_var = env_var
        self.choices = tuple(choices)
        self.default = default
        self._value: str | None = None

    def _validate(self, name: str) -> str:
        if name not in self.choices:
            raise ValueError(f"{self.env_var}={name!r} is not one of {', '.join(self.choices)}; "
                             f"use one of those (unset: {self.default})")
        return name

    def get(self) -> str:
        if self._value is None:
            self._value = self._validate(os.environ.get(self.env_var, self.default))
        return self._value

    def set(self, name: str) -> None:
        self._value = self._validate(name)

    @contextlib.contextmanager
    def use(self, name: str) -> Iterator[None]:
        previous = self._value
        self.set(name)
        try:
            yield
        finally:
            self._value = previous


KERNELS = BackendSwitch("SMAE_KERNELS", ("auto", "triton", "torch"))
ATTENTION = BackendSwitch("SMAE_ATTENTION", ("auto", "xformers", "sdpa", "math"))


def check_switches() -> dict[str, str]:
    """{variable: value in force} of both switches; ValueError naming the first bad variable.
    Programs call it before any work, so a typo stops them before they write anything."""
    return {switch.env_var: switch.get() for switch in (KERNELS, ATTENTION)}


def get_backend() -> str:
    """The kernel backend now in force: 'auto', 'triton' or 'torch'."""
    return KERNELS.get()


def set_backend(name: str) -> None:
    """Sets the kernel backend for the whole process ('auto', 'triton' or 'torch')."""
    KERNELS.set(name)


def use_backend(name: str):
    """Context manager: the kernel backend `name` inside the block, the previous one after."""
    return KERNELS.use(name)


def interpreter_enabled() -> bool:
    """True when Triton kernels run in its CPU interpreter (TRITON_INTERPRET=1)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


# Looked up once: find_spec locates the package without importing it (that costs seconds).
TRITON_INSTALLED = importlib.util.find_spec("triton") is not None


def triton_device_reasons(*tensors: torch.Tensor) -> list[str]:
    """Why Triton cannot run on these tensors at all (missing package, wrong device, a GPU the
    kernels cannot serve: `gpus.gpu_reasons`); [] if it can."""
    if not TRITON_INSTALLED:
        return ["the triton package is not installed (pip install 'smae[triton]')"]
    if interpreter_enabled():
        return []
    reasons = [
        f"input {i} is on {t.device}, not CUDA (set TRITON_INTERPRET=1 to run Triton on the CPU)"
        for i, t in enumerate(tensors)
        if t.device.type != "cuda"
    ]
    if reasons:
        return reasons
    return gpu_reasons(gpu_limits(tensors[0].device), (t.dtype for t in tensors))


def use_triton(op: str, reasons: list[str]) -> bool:
    """Decides reference vs Triton for one call of `op`, given why Triton cannot take its inputs.

    Returns True for Triton. Under the forced 'triton' backend a non-empty `reasons` raises
    BackendUnavailable naming the op and every reason.
    """
    backend = KERNELS.get()
    if backend == "torch":
        return False
    if backend == "triton" and reasons:
        listed = "\n".join(f"  - {reason}" for reason in reasons)
        raise BackendUnavailable(f"{op}: SMAE_KERNELS=triton, but Triton cannot take these inputs:\n{listed}")
    return not reasons
