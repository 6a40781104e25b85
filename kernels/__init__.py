"""smae's fused kernels, installed as `smae.kernels`: stateless functions on tensors.

Each op has a plain-PyTorch `*_reference` (the specification) and dispatches through one
process-wide switch (`SMAE_KERNELS=auto|triton|torch`, `set_backend`, `use_backend`).
Importing this package needs no GPU, no Triton and no xformers.
"""
from .attention import (
    attention,
    attention_reference,
    last_attention_backend,
    set_attention_backend,
    use_attention_backend,
)
from .backend import BackendUnavailable, check_switches, get_backend, set_backend, use_backend
from .masking import (
    gather_patches,
    gather_patches_reference,
    gather_visible,
    gather_visible_reference,
    scatter_visible,
    scatter_visible_reference,
)
from .patch_loss import masked_patch_loss, masked_patch_loss_reference, patchify, unpatchify
from .propagation import propagate_labels, propagate_labels_reference
from .support import describe_gpu

__all__ = [
    "BackendUnavailable",
    "attention",
    "attention_reference",
    "check_switches",
    "describe_gpu",
    "gather_patches",
    "gather_patches_reference",
    "gather_visible",
    "gather_visible_reference",
    "get_backend",
    "last_attention_backend",
    "masked_patch_loss",
    "masked_patch_loss_reference",
    "patchify",
    "propagate_labels",
    "propagate_labels_reference",
    "scatter_visible",
    "scatter_visible_reference",
    "set_attention_backend",
    "set_backend",
    "unpatchify",
    "use_attention_backend",
    "use_backend",
]
