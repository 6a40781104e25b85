"""`smae info`: versions, devices and which backends can run here."""
from __future__ import annotations

import argparse
import importlib.metadata


def add_arguments(parser: argparse.ArgumentParser) -> None:
    del parser  # no options


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def run(args: argparse.Namespace) -> int:
    import torch

    from smae.kernels import backend, describe_gpu
    from smae.kernels.attention import ATTENTION, xformers_reasons

    print(f"smae {_version('smae')}, torch {torch.__version__}, triton {_version('triton')}, xformers {_version('xformers')}")
    cuda = torch.cuda.is_available()
    print(f"CUDA: {torch.cuda.get_device_name(0) if cuda else 'not available'}")
    probe = torch.zeros(1, 1, 1, 8, device="cuda" if cuda else "cpu", dtype=torch.float16)
    reasons = backend.triton_device_reasons(probe)
    print(f"kernels: {_switch(backend.KERNELS)}; Triton {'can run' if not reasons else 'cannot run: ' + '; '.join(reasons)}")
    if cuda:  # what the kernels give this GPU, and why PyTorch runs what they leave
        print(f"GPU kernels: {describe_gpu()}")
    reasons = xformers_reasons(probe, probe, probe)
    print(f"attention: {_switch(ATTENTION)}; xformers {'can run' if not reasons else 'cannot run: ' + '; '.join(reasons)}")
    return 0


def _switch(switch) -> str:
    """'SMAE_X=value', or the problem with a bad environment value (info reports, never crashes)."""
    try:
        return f"{switch.env_var}={switch.get()}"
    except ValueError as error:
        return f"error: {error}"
