"""The NaN / inf stop, without a host sync per step.

Every step records on the device whether its loss, its gradients (before the update) or the
weights and AdamW's moments (after it) held a non-finite value, keeping the first step at which
each did. (Finite gradients can still overflow the second moment, g^2 > 3.4e38 in float32, while
the weights stay finite: a run with base_lr 1e4 on the test model did that at step 3.) Nothing
is read back per step: the host looks at the record at log and checkpoint steps (one small copy
it waits for there anyway), and a checkpoint is written only after that look found every step
finite, and only if every tensor it holds is finite.

Once a step's loss or gradients are not finite, this step and every later one skips the update
without a sync: the fused AdamW takes a `found_inf` tensor and leaves weights, moments and step
counts as they were when it is non-zero (the path torch.amp.GradScaler uses). So the weights in
memory stay those of the last finite step until the host notices. Under fp16 the GradScaler owns
that path (it skips overflowed steps and lowers the scale, as it should), and overflowed
gradients are no divergence there: only the loss and the weights are watched.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

import torch

from .distributed import all_reduce_min_int

WATCHED = ("loss", "gradients", "weights or optimizer state")
NEVER = 2**62  # "no non-finite value yet", larger than any step


class TrainingDiverged(RuntimeError):
    """The loss, the gradients or the weights became NaN or infinite."""


def all_finite(tensors: Iterable[torch.Tensor]) -> torch.Tensor:
    """A 0-dim bool tensor on the tensors' device: every value finite (no host sync)."""
    tensors = [t.detach() for t in tensors if t.is_floating_point()]
    if not tensors:
        return torch.ones((), dtype=torch.bool)
    largest = torch._foreach_norm(tensors, float("inf"))  # max |x| per tensor: NaN or inf iff one is
    return torch.isfinite(torch.stack(largest)).all()


@dataclass(frozen=True)
class Divergence:
    first_bad: dict[str, int]  # watched quantity -> first step (1-based) where it was not finite

    @property
    def step(self) -> int:
        return min(self.first_bad.values())

    def describe(self) -> str:
        what = " and ".join(name for name, step in self.first_bad.items() if step == self.step)
        return f"the {what} became non-finite at step {self.step}; step {self.step - 1} was the last finite one"


class DivergenceWatch:
    """First non-finite step of the loss, gradients and weights, kept on `device`."""

    def __init__(self, device: torch.device):
        self.first_bad = torch.full((len(WATCHED),), NEVER, dtype=torch.int64, device=device)

    def skip_update(self, loss: torch.Tensor, grads: list[torch.Tensor] | None) -> torch.Tensor:
        """Float 0-dim tensor, 1 when the update must be skipped: the loss or `grads` (None: not
        watched) are not finite now, or something was before. Call before the update."""
        self._bad_now = torch.stack([~torch.isfinite(loss).all(), ~all_finite(grads) if grads is not None else
                                     torch.zeros((), dtype=torch.bool, device=loss.device)])
        return (self._bad_now.any() | (self.first_bad < NEVER).any()).float()

    def after_update(self, step: int, weights: list[torch.Tensor]) -> None:
        """Records step `step` (1-based) with the weights and optimizer state after its update."""
        bad = torch.cat([self._bad_now, (~all_finite(weights)).reshape(1)])
        self.first_bad = torch.where(bad & (self.first_bad == NEVER), step, self.first_bad)

    def check(self, world_size: int) -> Divergence | None:
        """The divergence so far over all processes, or None. A host sync (and a collective):
        call it at log and checkpoint steps only, on every rank."""
        first = all_reduce_min_int(self.first_bad, world_size).tolist()
        if min(first) == NEVER:
            return None
        return Divergence({name: step for name, step in zip(WATCHED, first) if step != NEVER})


def non_finite_entries(state: Mapping) -> list[str]:
    """Dotted keys of the floating tensors in a nested state dict that hold NaN or inf (one
    host sync per device, at checkpoint time)."""
    named: list[tuple[str, torch.Tensor]] = []

    def collect(value, name: str) -> None:
        if isinstance(value, Mapping):
            for key, item in value.items():
                collect(item, f"{name}.{key}" if name else str(key))
        elif isinstance(value, torch.Tensor) and value.is_floating_point():
            named.append((name, value.detach()))

    collect(state, "")
    bad = []
    for device in {tensor.device for _, tensor in named}:
        on_device = [(name, tensor) for name, tensor in named if tensor.device == device]
        finite = torch.isfinite(torch.stack(torch._foreach_norm([t for _, t in on_device], float("inf")))).tolist()
        bad += [name for (name, _), ok in zip(on_device, finite) if not ok]
    return sorted(bad)
