"""The pre-training loop: one loop for every setting (CPU or GPUs, one process or many, with or
without gradient accumulation, fresh or resumed). The run folder is described in run_folder.py.

A step: set the step's learning rate; for each of `accum_steps` micro-batches, forward with the
micro-batch's own mask seed and backward (DDP all-reduces on the last one only); clip; fused
AdamW step, skipped on the device when the loss or the gradients are not finite.

Nothing in a step waits for the device: the loss stays a device tensor summed over the log window
and the NaN / inf record stays on the device (divergence.py); both are read back, and the loss
all-reduced, at log and checkpoint steps only, as nanoGPT does. `compile=true` runs the model
(forward and backward) through `torch.compile`.
"""
from __future__ import annotations

import contextlib
import os
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from smae.config import to_dict
from smae.data.pair_source import open_pair_dataset, pair_batch_to_device
from smae.data.pairs import FramePairDataset, PairKey, collate_pairs
from smae.data.transforms import PairAugment
from smae.progress import progress_bar
from smae.atomic import write_json_atomic
from smae.kernels import check_switches
from smae.models import SiamMAE

from .checkpoint import CHECKPOINT_NAME, rng_state, save_atomic, set_rng_state
from .config import TrainConfig
from .distributed import DistContext, StepBatchSampler, all_reduce_sum_int, gather_objects, init_distributed, micro_batch_seed
from .divergence import Divergence, DivergenceWatch, TrainingDiverged, non_finite_entries
from .figure import save_reconstruction_figure
from .optim import build_optimizer, effective_lr, lr_at, set_lr, step_plan
from .run_folder import METRICS_NAME, MetricsWindow, append_metrics, checkpoint_to_resume, rewrite_metrics

FIGURE_SEED = 1234  # masks of the figure: the same at every checkpoint, so figures compare


@dataclass(frozen=True)
class RunResult:
    out_dir: Path
    checkpoint: Path
    figure: Path | None
    steps: int
    final_loss: float  # mean loss of the last logged window
    skipped_videos: int  # skip events on all ranks in this session (a bad video counts each time it is drawn)


@dataclass
class Session:
    """What one optimizer step needs."""

    config: TrainConfig
    context: DistContext
    model: SiamMAE
    network: torch.nn.Module  # the model, or its DDP wrapper; compiled when config.compile
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    dtype: torch.dtype | None  # autocast dtype; None: float32
    watch: DivergenceWatch


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for `precision` on `device`; None: plain float32. auto: bf16 on a GPU
    with bf16 arithmetic (sm_80 on), fp16 before (the session's GradScaler is on for fp16)."""
    if precision == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.get_device_capability(device) >= (8, 0) else torch.float16
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}[precision]


def cpu_threads(current: int, num_workers: int) -> int:
    """Compute threads for a CPU run: the cores left by its data workers and by the other
    processes of the job. OpenMP threads beyond the free cores spin-wait: on a busy 2-core
    machine we measured 4-6 s per `tiny` step with 2 threads next to a worker, 0.25 s with 1."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    per_process = cores // int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return max(1, min(current, per_process - num_workers))


def train(config: TrainConfig, data: str | Path, out_dir: str | Path, *, preset: str = "custom",
          resume: bool = False, progress: bool = True,
          on_checkpoint: Callable[[int, Path], None] | None = None) -> RunResult:
    """Pre-trains SiamMAE on the videos under `data` into the run folder `out_dir`.

    on_checkpoint(step, path): called on the main process after each checkpoint is saved (the
    file is overwritten by the next one: a learning curve copies or scores it there).

    Raises TrainingDiverged on a NaN / inf loss, gradient or weight (the last checkpoint, all
    finite, stays as it was), FileExistsError if `out_dir` holds a run and `resume` is False,
    ValueError on a bad SMAE_KERNELS / SMAE_ATTENTION before anything is written.
    """
    check_switches()
    context, created_group = init_distributed()
    threads = torch.get_num_threads()
    if context.device.type == "cpu":
        torch.set_num_threads(cpu_threads(threads, config.num_workers))
    try:
        return _train(config, Path(data), Path(out_dir), preset, resume, progress, context, on_checkpoint)
    finally:
        torch.set_num_threads(threads)
        if created_group:
            torch.distributed.destroy_process_group()


def _seed_process(seed: int, rank: int) -> None:
    """A different stream per rank for anything drawing from the global generators."""
    torch.manual_seed(seed + rank)
    np.random.seed(seed + rank)
    random.seed(seed + rank)


def _start_session(config: TrainConfig, context: DistContext, checkpoint: dict | None) -> tuple[Session, int]:
    """Model, optimizer and scaler, fresh (seeded) or restored; and the step to start from."""
    _seed_process(config.seed, context.rank)
    model = SiamMAE(config.model).to(context.device)
    optimizer = build_optimizer(model, effective_lr(config.base_lr, config.batch_size), config.weight_decay, config.betas)
    dtype = autocast_dtype(config.precision, context.device)
    scaler = torch.amp.GradScaler(context.device.type, enabled=dtype == torch.float16)
    step = 0
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scaler.load_state_dict(checkpoint["scaler"])
        step = int(checkpoint["step"])
        if len(checkpoint["rng"]) == context.world_size:  # else the streams seeded above stand
            set_rng_state(checkpoint["rng"][context.rank])
    network = model
    if context.world_size > 1:
        network = DistributedDataParallel(model, device_ids=[context.device.index] if context.device.type == "cuda" else None)
    if config.compile:
        network = torch.compile(network)
    return Session(config, context, model, network, optimizer, scaler, dtype, DivergenceWatch(context.device)), step


def _figure_batch(dataset: FramePairDataset, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first `count` pairs of the first videos: fixed across checkpoints. Reading them up
    front also stops a run whose data is all unreadable before any worker starts."""
    items, pairs = [], 0
    while pairs < count and len(items) < len(dataset):
        items.append(dataset[PairKey(0, len(items))])
        pairs += items[-1]["f1"].shape[0]
    f1, f2 = pair_batch_to_device(collate_pairs(items), torch.device("cpu"))
    return f1[:count], f2[:count]


@contextlib.contextmanager
def mask_seed(device: torch.device, seed: int):
    """The device's default generator seeded with `seed` inside the block, restored after. The
    masks draw from it (generator=None): torch.compile cannot trace a torch.Generator argument,
    and a seeded default generator gives the same masks as Generator(device).manual_seed(seed)."""
    generator = torch.cuda.default_generators[device.index or 0] if device.type == "cuda" else torch.default_generator
    saved = generator.get_state()
    generator.manual_seed(seed)
    try:
        yield
    finally:
        generator.set_state(saved)


def optimizer_step(session: Session, batches, step: int, on_skipped) -> torch.Tensor:
    """One optimizer step over `accum_steps` micro-batches; returns this process's loss, a
    0-dim device tensor (not read back: no host sync here). The update is skipped on the device
    when the loss or the gradients are not finite (see divergence.py)."""
    config, context = session.config, session.context
    loss_sum = torch.zeros((), device=context.device)
    for micro in range(config.accum_steps):
        batch = next(batches)
        on_skipped(batch["skipped"])
        f1, f2 = pair_batch_to_device(batch, context.device)
        seed = micro_batch_seed(config.seed, step, context.rank * config.accum_steps + micro)
        # DDP all-reduces the gradients once per step: on the last micro-batch.
        syncing = context.world_size == 1 or micro == config.accum_steps - 1
        with contextlib.nullcontext() if syncing else session.network.no_sync(), mask_seed(context.device, seed):
            with torch.autocast(context.device.type, dtype=session.dtype or torch.float32, enabled=session.dtype is not None):
                loss, _, _ = session.network(f1, f2)
            session.scaler.scale(loss / config.accum_steps).backward()
        loss_sum += loss.detach().float()
    step_loss = loss_sum / config.accum_steps
    params = [p for group in session.optimizer.param_groups for p in group["params"]]
    if session.scaler.is_enabled():  # fp16: the scaler skips overflowed steps itself
        if config.clip_grad is not None:
            session.scaler.unscale_(session.optimizer)
            torch.nn.utils.clip_grad_norm_(params, config.clip_grad)
        session.watch.skip_update(step_loss, None)  # records the loss; overflowed gradients are no divergence
        session.scaler.step(session.optimizer)
        session.scaler.update()
    else:
        skip = session.watch.skip_update(step_loss, [p.grad for p in params if p.grad is not None])
        if config.clip_grad is not None:
            torch.nn.utils.clip_grad_norm_(params, config.clip_grad)
        if session.optimizer.defaults.get("fused"):
            session.optimizer.found_inf = skip  # read by the fused step: no update where it is 1
        session.optimizer.step()
        session.optimizer.__dict__.pop("found_inf", None)
    session.optimizer.zero_grad(set_to_none=True)
    moments = [t for state in session.optimizer.state.values() for t in state.values() if isinstance(t, torch.Tensor)]
    session.watch.after_update(step + 1, params + moments)
    return step_loss


class SkipLog:
    """Counts skipped videos and warns once per file."""

    def __init__(self):
        self.count, self.warned = 0, set()

    def __call__(self, skipped: list[tuple[str, str]]) -> None:
        for path, reason in skipped:
            self.count += 1
            if path not in self.warned:
                self.warned.add(path)
                tqdm.write(f"warning: skipping video: {reason}", file=sys.stderr)


def _diverged(divergence: Divergence, config: TrainConfig, plan, peak_lr: float, now: int, kept: Path,
              kept_step: int | None) -> TrainingDiverged:
    lr = lr_at(divergence.step - 1, peak_lr, plan.total_steps, plan.warmup_steps, config.min_lr)
    state = (f"the last checkpoint, {kept} (step {kept_step}), holds only finite tensors and is kept"
             if kept_step is not None else "no checkpoint was written")
    return TrainingDiverged(f"{divergence.describe()} (lr {lr:.3g}; seen at step {now}); {state}. "
                            f"Try a lower base_lr, clip_grad or precision=fp32.")


def _train(config: TrainConfig, data: Path, out: Path, preset: str, resume: bool, progress: bool,
           context: DistContext, on_checkpoint: Callable[[int, Path], None] | None) -> RunResult:
    checkpoint = checkpoint_to_resume(out, resume, config)
    augment = PairAugment(config.model.encoder.img_size, config.crop_scale, config.crop_ratio, config.flip_prob)
    dataset = open_pair_dataset(data, augment, config.gap_range, config.repeats, config.seed)
    plan = step_plan(len(dataset), config.batch_size, config.repeats, context.world_size, config.accum_steps,
                     config.epochs, config.warmup_epochs)
    peak_lr = effective_lr(config.base_lr, config.batch_size)
    session, step = _start_session(config, context, checkpoint)
    kept, kept_step = out / CHECKPOINT_NAME, (step if checkpoint is not None else None)

    last_loss = float("nan")
    if context.is_main:
        out.mkdir(parents=True, exist_ok=True)
        figure_pairs = [t.to(context.device) for t in _figure_batch(dataset, config.figure_pairs)]
        write_json_atomic(out / "config.json", {
            "preset": preset, "config": to_dict(config), "data": str(data), "world_size": context.world_size,
            "derived": {"peak_lr": peak_lr, "videos": len(dataset), **plan._asdict()},
        })
        # Lines past the checkpoint (or, fresh, of an earlier run killed before its first one) go.
        logged = rewrite_metrics(out / METRICS_NAME, step)
        last_loss = logged[-1]["loss"] if logged else last_loss

    sampler = StepBatchSampler(len(dataset), plan.videos_per_micro_batch, config.accum_steps, context.world_size,
                               context.rank, config.seed, step, plan.total_steps)
    batches = iter(DataLoader(dataset, batch_sampler=sampler, num_workers=config.num_workers,
                              collate_fn=collate_pairs, pin_memory=context.device.type == "cuda"))
    bar = progress_bar(total=plan.total_steps, initial=step, unit="step", disable=not (progress and context.is_main),
                       dynamic_ncols=True)
    skips, window = SkipLog(), MetricsWindow()
    figure = None
    while step < plan.total_steps:
        lr = lr_at(step, peak_lr, plan.total_steps, plan.warmup_steps, config.min_lr)
        set_lr(session.optimizer, lr)
        window.add(optimizer_step(session, batches, step, skips))
        step += 1
        bar.update(1)
        logging = step % config.log_every == 0 or step == plan.total_steps
        saving = step % config.checkpoint_every == 0 or step == plan.total_steps
        if not (logging or saving):
            continue
        divergence = session.watch.check(context.world_size)  # the one host sync, all ranks
        if divergence is not None:
            raise _diverged(divergence, config, plan, peak_lr, step, kept, kept_step)
        if logging:
            skipped = all_reduce_sum_int(skips.count, context.device, context.world_size)
            line = window.record(step, step * config.repeats / plan.steps_per_pass, lr, config.batch_size, skipped,
                                 context.world_size)
            last_loss = line["loss"]
            bar.set_postfix(loss=f"{last_loss:.4f}", lr=f"{lr:.2e}", pairs_s=f"{line['pairs_per_s']:.0f}")
            if context.is_main:
                append_metrics(out, line)
        if saving:
            rng_states = gather_objects(rng_state(), context.world_size)  # a collective: all ranks call it
            state = {"model": session.model.state_dict(), "optimizer": session.optimizer.state_dict(),
                     "scaler": session.scaler.state_dict(), "step": step, "config": to_dict(config),
                     "preset": preset, "rng": rng_states}
            # Every rank checks (the states are replicas), so all stop together. Catches e.g.
            # AdamW's second moment overflowing while the weights stay finite.
            bad = non_finite_entries({"model": state["model"], "optimizer": state["optimizer"]["state"]})
            if bad:
                raise TrainingDiverged(f"step {step}: {len(bad)} tensors of the state are not finite "
                                       f"({', '.join(bad[:3])}); not saved, "
                                       + (f"the last checkpoint, {kept} (step {kept_step}), is kept" if kept_step is not None
                                          else "no checkpoint was written") + ". Try a lower base_lr, clip_grad or precision=fp32.")
            if context.is_main:
                save_atomic(state, kept)
                figure = save_reconstruction_figure(out / "figures" / f"step-{step:07d}.png", session.model,
                                                    *figure_pairs, torch.Generator(device=context.device).manual_seed(FIGURE_SEED))
                if on_checkpoint is not None:
                    on_checkpoint(step, kept)
            kept_step = step
    bar.close()
    skipped = all_reduce_sum_int(skips.count, context.device, context.world_size)
    if skipped and context.is_main:
        print(f"skipped {skipped} video reads (unreadable, truncated or too short; see the warnings)", file=sys.stderr)
    return RunResult(out, out / CHECKPOINT_NAME, figure, step, last_loss, skipped)
