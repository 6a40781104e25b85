"""Launch plans of the fused propagation for every GPU target and part (`smae.kernels.gpus`),
on the CPU: the plan is a pure function of the device's limits. tests/test_gpu_budget.py
checks the compiled kernels against these plans; here, that each plan fills its GPU, and that
every query tile a plan can pick computes the reference's result (in the interpreter)."""
import dataclasses
import types

import pytest
import torch

from bench.shapes import PROPAGATION_SHAPES
from smae.kernels import propagate_labels_reference
from smae.kernels.gpus import PARTS, TARGETS, limits_from_properties
from smae.kernels.propagation_plan import (
    MIN_PROGRAMS_PER_SM,
    QUERY_TILES,
    plan_propagation,
    propagation_gpu_reasons,
    window_reach,
)

DAVIS = list(PROPAGATION_SHAPES)


def davis_plan(gpu, shape_name: str, channels: int | None = None):
    shape = PROPAGATION_SHAPES[shape_name]
    reach = window_reach(shape["radius"], shape["window"])
    return plan_propagation(gpu, shape["grid"], shape["frames"], shape["global_frames"], reach,
                            channels or shape["channels"], shape["topk"])


@pytest.mark.parametrize("shape_name", DAVIS)
@pytest.mark.parametrize("part", list(PARTS))
def test_plan_keeps_two_programs_per_sm_and_fills_the_gpu(part, shape_name):
    gpu = PARTS[part]
    plan = davis_plan(gpu, shape_name)
    assert plan.programs_per_sm >= MIN_PROGRAMS_PER_SM
    slots = plan.programs_per_sm * gpu.processors
    programs = plan.query_tiles * plan.splits
    assert programs >= slots, f"{part}: {programs} programs leave some of the {slots} resident slots empty"
    # and no split beyond that: each costs a merge
    assert plan.splits == 1 or (plan.splits - 1) * plan.query_tiles < slots, f"{part}: {plan}"


@pytest.mark.parametrize("target,tile", [("sm_70", (4, 8)), ("sm_75", (4, 4)), ("sm_80", (8, 8)), ("sm_86", (4, 8)),
                                         ("sm_89", (4, 8)), ("sm_90", (8, 8)), ("sm_100", (8, 8)), ("sm_120", (4, 8))])
def test_query_tile_per_target(target, tile):
    """64-row tiles (one Hopper warpgroup MMA) where two fit an SM, smaller ones on 100 KiB
    and 64 KiB parts (at 8x8 one program of 65 KiB fills a 100 KiB SM)."""
    assert davis_plan(TARGETS[target], "davis-vits16").query_tile == tile


def test_widest_features_fit_every_target():
    """C = 768 (ViT-B): a resident 32 x 768 fp16 query tile; two programs per SM where shared
    memory is 164 KiB or more, one on the 100 KiB parts (the plan says so, it is not refused)."""
    resident = {target: davis_plan(gpu, "davis-vits16", channels=768).programs_per_sm for target, gpu in TARGETS.items()}
    assert resident == {"sm_70": 1, "sm_75": 1, "sm_80": 2, "sm_86": 1, "sm_89": 1, "sm_90": 2, "sm_100": 2, "sm_120": 1}


def test_splits_follow_the_sm_count():
    """Two parts of one capability, different SM counts: the smaller one gets fewer splits."""
    small, large = davis_plan(PARTS["L4"], "davis-vits16"), davis_plan(PARTS["L40S"], "davis-vits16")
    assert small.query_tile == large.query_tile
    assert small.splits < large.splits


def test_a_gpu_with_too_little_shared_memory_is_refused():
    tiny = dataclasses.replace(TARGETS["sm_86"], name="tiny", shared_per_sm=32 * 1024, shared_per_block=24 * 1024)
    reasons = propagation_gpu_reasons(tiny, 384)
    assert len(reasons) == 1 and "shared memory" in reasons[0] and "24 KiB per block" in reasons[0]
    with pytest.raises(ValueError, match="shared memory"):
        davis_plan(tiny, "davis-vits16")
    assert propagation_gpu_reasons(TARGETS["sm_86"], 384) == []


def properties_of(gpu):
    """A stand-in for torch.cuda.get_device_properties(...) of that GPU."""
    return types.SimpleNamespace(
        name=gpu.name, major=gpu.capability // 10, minor=gpu.capability % 10, multi_processor_count=gpu.processors,
        shared_memory_per_multiprocessor=gpu.shared_per_sm, shared_memory_per_block_optin=gpu.shared_per_block,
        regs_per_multiprocessor=gpu.registers_per_sm, max_threads_per_multi_processor=gpu.threads_per_sm)


@pytest.mark.parametrize("target", list(TARGETS))
def test_limits_read_from_device_properties(target):
    assert limits_from_properties(properties_of(TARGETS[target])) == TARGETS[target]


def test_limits_missing_from_properties_come_from_the_nearest_older_target():
    """An sm_87 part (Jetson Orin) with only the fields every torch has: sm_86's figures."""
    properties = types.SimpleNamespace(name="Orin", major=8, minor=7, multi_processor_count=16)
    limits = limits_from_properties(properties)
    assert (limits.capability, limits.processors, limits.shared_per_sm) == (87, 16, TARGETS["sm_86"].shared_per_sm)


@pytest.mark.parametrize("tile", QUERY_TILES)
def test_every_query_tile_computes_the_reference(tile, device):
    """The tiles the plans pick, run by the kernel (interpreted on the CPU) at an awkward grid."""
    from smae.kernels.propagation_triton import propagate_labels_triton

    gen = torch.Generator().manual_seed(3)
    grid, frames, channels = (7, 11), 3, 40
    n = grid[0] * grid[1]
    query = torch.nn.functional.normalize(torch.randn(n, channels, generator=gen), dim=-1).to(device)
    keys = torch.nn.functional.normalize(torch.randn(frames, n, channels, generator=gen), dim=-1).to(device)
    labels = torch.rand(frames, n, 3, generator=gen).softmax(-1).to(device)
    args = dict(grid=grid, topk=5, temperature=0.1, radius=3, window="circle", global_frames=1)
    actual = propagate_labels_triton(query, keys, labels, **args, query_tile=tile, splits=2)
    torch.testing.assert_close(actual.cpu(), propagate_labels_reference(query, keys, labels, **args).cpu(),
                               atol=2e-5, rtol=0)


def test_blackwell_propagation_needs_triton_3_9():
    """Triton 3.6 aborts compiling the candidates kernel for sm_100 (tests/gpu_budget.py under it)."""
    old, new = propagation_gpu_reasons(TARGETS["sm_100"], 384, (3, 6)), propagation_gpu_reasons(TARGETS["sm_100"], 384, (3, 9))
    assert len(old) == 1 and "Triton 3.6 fails to compile the candidates kernel for sm_100" in old[0]
    assert new == [] and propagation_gpu_reasons(TARGETS["sm_90"], 384, (3, 6)) == []
