"""Process-wide backend switches for the fused kernels and for attention.

Kernels: `SMAE_KERNELS=auto|triton|torch` (default auto), `set_backend(name)`, `use_backend(name)`.
- auto: the Triton kernel wherever it can run (CUDA tensors, or any tensor when
  TRITON_INTERPRET=1), the plain PyTorch reference otherwise.
- triton: forced; raises `BackendUnavailable` listing every reason when Triton cannot take the
  inputs, so a test can never pass on the fallback by accident.
- torch: always the reference.

Attention has its own switch with the same behaviour (`SMAE_ATTENTION=auto|xformers|sdpa|math`),
see `smae.kernels.attention`.

Nothing here touches CUDA or imports Triton at import time.
"""
from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
from typing import Iterator, Sequence

import torch


class BackendUnavailable(RuntimeError):
    """A forced backend cannot take the given inputs; the message lists why."""


class BackendSwitch:
    """One named switch: a default from an environment variable, a setter and a context manager."""

    def __init__(self, env_var: str, choices: Sequence[str], default: str = "auto"):
        self.env_var = env_var
        self.choices = tuple(choices)
        self._value = self._validate(os.environ.get(env_var, default), source=env_var)

    def _validate(self, name: str, source: str) -> str:
        if name not in self.choices:
            raise ValueError(f"{source}={name!r} is not one of {', '.join(self.choices)}")
        return name

    def get(self) -> str:
        return self._value

    def set(self, name: str) -> None:
        self._value = self._validate(name, source=self.env_var)

    @contextlib.contextmanager
    def use(self, name: str) -> Iterator[None]:
        previous = self._value
        self.set(name)
        try:
            yield
        finally:
            self._value = previous


KERNELS = BackendSwitch("SMAE_KERNELS", ("auto", "triton", "torch"))


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


@functools.lru_cache(maxsize=None)
def triton_importable() -> bool:
    return importlib.util.find_spec("triton") is not None


def triton_device_reasons(*tensors: torch.Tensor) -> list[str]:
    """Why Triton cannot run on these tensors at all (missing package, wrong device); [] if it can."""
    if not triton_importable():
        return ["the triton package is not installed (pip install 'smae[triton]')"]
    if interpreter_enabled():
        return []
    return [
        f"input {i} is on {t.device}, not CUDA (set TRITON_INTERPRET=1 to run Triton on the CPU)"
        for i, t in enumerate(tensors)
        if t.device.type != "cuda"
    ]


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
