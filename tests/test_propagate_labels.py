"""propagate_labels: the chunked reference and the fused Triton kernel against a naive float64
formulation that materialises everything and picks each query's keys one query at a time; the
kernel in fp32 and fp16 (interpreted without a GPU) and bf16 (GPU); dispatch. (Propagation is an
evaluation op with no backward, called eagerly: it has no custom operator.)
Tolerances: tests/tolerance.py (the output is a convex combination of labels in [0, 1]; a swap
of two picks, what a low-precision top-k would cause, moves it by ~1e-2, far above the bound)."""
import pytest
import torch

from smae.kernels import BackendUnavailable, propagate_labels, propagate_labels_reference, use_backend
from kernel_cases import KERNEL_DTYPES, cuda, needs_gpu
from tolerance import assert_within_pytorch_error


def dense_propagation(query, keys, labels, *, grid, topk, temperature, radius=None, window="circle", global_frames=1,
                      dtype=torch.float64):
    """Everything materialised, each query's allowed keys listed and sorted explicitly; computed
    in `dtype` (float64: the specification; float32: plain PyTorch's own error in float32)."""
    h, w = grid
    frames, n, _ = keys.shape
    device = query.device
    cells = torch.tensor([(i, j) for i in range(h) for j in range(w)], dtype=torch.float64, device=device)
    offsets = cells[:, None, :] - cells[None, :, :]  # (N, N, 2)
    if radius is None:
        near = torch.ones(n, n, dtype=torch.bool, device=device)
    elif window == "circle":
        near = (offsets**2).sum(-1) < radius**2
    else:
        near = (offsets.abs() <= radius).all(-1)
    is_global = (torch.arange(frames, device=device) < global_frames)[None, :, None]
    allowed = (near[:, None, :] | is_global).reshape(n, frames * n)  # (N, T * N)
    scores = query.to(dtype) @ keys.to(dtype).reshape(frames * n, -1).T  # (N, T * N)
    flat_labels = labels.to(dtype).reshape(frames * n, -1)
    out = torch.empty(n, labels.shape[-1], dtype=dtype, device=device)
    for q in range(n):
        candidates = allowed[q].nonzero().squeeze(1)
        chosen = candidates[scores[q, candidates].argsort(descending=True)[:topk]]
        weights = (scores[q, chosen] / temperature).softmax(0)
        out[q] = weights @ flat_labels[chosen]
    return out


def assert_matches_dense(actual, query, keys, labels, baseline=None, **args):
    """actual against the float64 dense formulation, within 2x the error of `baseline` (default:
    the dense formulation computed in float32, what plain PyTorch gets in the reference's
    precision)."""
    exact = dense_propagation(query, keys, labels, **args)
    if baseline is None:
        baseline = dense_propagation(query, keys, labels, **args, dtype=torch.float32)
    assert actual.dtype == torch.float32
    assert_within_pytorch_error(actual, exact, baseline, "propagation")


def random_inputs(grid, frames, channels, classes, dtype=torch.float32, device="cpu", seed=0):
    """Unit-norm features and soft labels (rows summing to 1), the way an evaluation feeds them."""
    gen = torch.Generator().manual_seed(seed)
    n = grid[0] * grid[1]
    query = torch.nn.functional.normalize(torch.randn(n, channels, generator=gen), dim=-1)
    keys = torch.nn.functional.normalize(torch.randn(frames, n, channels, generator=gen), dim=-1)
    labels = torch.rand(frames, n, classes, generator=gen).softmax(-1)
    return query.to(device, dtype), keys.to(device, dtype), labels.to(device)


WINDOW_CASES = [
    # (window, radius, global_frames)
    ("circle", None, 1),
    ("circle", 1, 1),  # only the query's own cell in the local frames
    ("circle", 2.5, 0),
    ("circle", 3, 1),
    ("circle", 3, 2),
    ("square", 0.5, 1),  # own cell only
    ("square", 1, 0),
    ("square", 2, 2),
]


@pytest.mark.parametrize("window,radius,global_frames", WINDOW_CASES)
@pytest.mark.parametrize("frames", [1, 3])
@pytest.mark.parametrize("topk", [1, 5, 10, 32])
@pytest.mark.parametrize("chunk_bytes", [None, 16 * 2**10], ids=["one-chunk", "small-tiles"])
def test_reference_matches_dense(window, radius, global_frames, frames, topk, chunk_bytes):
    grid = (7, 9)
    query, keys, labels = random_inputs(grid, frames, channels=16, classes=3, seed=frames * 100 + topk)
    args = dict(grid=grid, topk=topk, temperature=0.07, radius=radius, window=window, global_frames=global_frames)
    budget = {} if chunk_bytes is None else dict(chunk_bytes=chunk_bytes)
    actual = propagate_labels_reference(query, keys, labels, **args, **budget)
    assert actual.shape == (63, 3)
    assert_matches_dense(actual, query, keys, labels, **args)


@pytest.mark.parametrize("feature_dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("label_dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_reference_low_precision_inputs(feature_dtype, label_dtype):
    grid = (6, 8)
    query, keys, labels = random_inputs(grid, 4, channels=24, classes=5, dtype=feature_dtype, seed=7)
    labels = labels.to(label_dtype)
    args = dict(grid=grid, topk=7, temperature=0.1, radius=2, window="circle", global_frames=1)
    actual = propagate_labels_reference(query, keys, labels, **args)
    assert_matches_dense(actual, query, keys, labels, **args)  # on the same rounded inputs


def test_fewer_allowed_keys_than_topk_uses_all_allowed():
    """Radius 1, one local frame, no global one: each query's own cell is its only key, so the
    output is exactly that key's label whatever topk asks for."""
    grid = (5, 4)
    query, keys, labels = random_inputs(grid, 1, channels=8, classes=3, seed=3)
    args = dict(grid=grid, topk=10, temperature=0.1, radius=1, global_frames=0)
    out = propagate_labels_reference(query, keys, labels, **args)
    assert_within_pytorch_error(out, labels[0].double(), dense_propagation(query, keys, labels, **args, dtype=torch.float32), "own label")


@pytest.mark.parametrize("radius,global_frames", [(None, 1), (3, 1), (2, 0)])
def test_tiny_chunk_budget_gives_the_same_result(radius, global_frames):
    grid = (8, 11)
    query, keys, labels = random_inputs(grid, 3, channels=16, classes=4, seed=11)
    args = dict(grid=grid, topk=5, temperature=0.1, radius=radius, global_frames=global_frames)
    whole = propagate_labels_reference(query, keys, labels, **args, chunk_bytes=2**40)
    tiny = propagate_labels_reference(query, keys, labels, **args, chunk_bytes=1)  # one query per chunk
    for actual in (whole, tiny):
        assert_matches_dense(actual, query, keys, labels, **args)


@pytest.mark.parametrize("radius", [None, 3])
def test_chunks_stay_within_the_budget(radius, monkeypatch):
    """No chunk's affinity exceeds chunk_bytes, and the result does not depend on it."""
    from smae.kernels import propagation

    grid, budget = (20, 24), 256 * 2**10
    query, keys, labels = random_inputs(grid, 5, channels=16, classes=3, seed=2)
    args = dict(grid=grid, topk=7, temperature=0.1, radius=radius, global_frames=1)
    whole = propagate_labels_reference(query, keys, labels, **args, chunk_bytes=2**40)
    chunk_sizes = []
    original_add = propagation._RunningTopk.add
    monkeypatch.setattr(propagation._RunningTopk, "add",
                        lambda self, scores, key_index: chunk_sizes.append(scores.numel() * 4) or original_add(self, scores, key_index))
    chunked = propagate_labels_reference(query, keys, labels, **args, chunk_bytes=budget)
    assert len(chunk_sizes) > 4 and max(chunk_sizes) <= budget
    assert_within_pytorch_error(chunked, dense_propagation(query, keys, labels, **args), whole, "chunked")


def test_non_contiguous_inputs():
    grid = (5, 6)
    query, keys, labels = random_inputs(grid, 3, channels=12, classes=4, seed=5)
    args = dict(grid=grid, topk=4, temperature=0.1, radius=2, window="square")
    strided_keys = keys.transpose(0, 1).contiguous().transpose(0, 1)  # same values, (N, T, C) memory
    strided_labels = labels.transpose(0, 1).contiguous().transpose(0, 1)
    out = propagate_labels_reference(query.T.contiguous().T, strided_keys, strided_labels, **args)
    assert_matches_dense(out, query, keys, labels, **args)


BAD_ARGUMENTS = [
    ("query", dict(query=torch.randn(4, 3, 8))),
    ("keys", dict(keys=torch.randn(2, 20, 7))),
    ("labels", dict(labels=torch.rand(3, 20, 2))),
    ("grid", dict(grid=(4, 4))),
    ("topk", dict(topk=0)),
    ("temperature", dict(temperature=0.0)),
    ("radius", dict(radius=0)),
    ("window", dict(window="diamond")),
    ("global_frames", dict(global_frames=-1)),
]


@pytest.mark.parametrize("argument,change", BAD_ARGUMENTS, ids=[name for name, _ in BAD_ARGUMENTS])
def test_bad_arguments_name_the_argument(argument, change):
    query, keys, labels = random_inputs((4, 5), 2, channels=8, classes=2)
    args = dict(query=query, keys=keys, labels=labels, grid=(4, 5), topk=3, temperature=0.1, radius=2)
    args.update(change)
    with pytest.raises(ValueError, match=argument):
        propagate_labels(**args)


# Fused kernel (the Triton interpreter without a GPU: tiny shapes only). Each case:
# (grid, frames, channels, classes, topk, window, radius, global_frames)
TRITON_CASES = [
    ((7, 9), 3, 16, 3, 5, "circle", 3, 1),
    ((9, 11), 2, 20, 5, 32, "circle", 2.5, 0),  # several query and key tiles; C not a multiple of 16
    ((5, 6), 4, 80, 2, 1, "square", 1, 2),  # C over one channel block
    ((6, 7), 2, 16, 4, 10, "circle", None, 1),
    ((4, 5), 2, 16, 3, 7, "circle", 1, 0),  # own cell only: fewer allowed keys than topk
    ((1, 13), 1, 24, 1, 3, "square", 2, 0),  # a single grid row, one class
]


@pytest.mark.parametrize("dtype", KERNEL_DTYPES)
@pytest.mark.parametrize("grid,frames,channels,classes,topk,window,radius,global_frames", TRITON_CASES)
def test_triton_matches_dense(dtype, grid, frames, channels, classes, topk, window, radius, global_frames, device):
    query, keys, labels = random_inputs(grid, frames, channels, classes, dtype=dtype, device=device, seed=topk + channels)
    args = dict(grid=grid, topk=topk, temperature=0.07, radius=radius, window=window, global_frames=global_frames)
    with use_backend("triton"):
        actual = propagate_labels(query, keys, labels, **args)
    assert_matches_dense(actual, query, keys, labels, propagate_labels_reference(query, keys, labels, **args), **args)


@cuda
def test_triton_non_contiguous_and_half_labels(device):
    grid = (6, 9)
    query, keys, labels = random_inputs(grid, 3, channels=32, classes=6, device=device, seed=9)
    args = dict(grid=grid, topk=6, temperature=0.1, radius=2, window="circle", global_frames=1)
    labels = labels.half()
    strided_keys = keys.transpose(0, 1).contiguous().transpose(0, 1)
    with use_backend("triton"):
        actual = propagate_labels(query.T.contiguous().T, strided_keys, labels[..., :], **args)
    assert_matches_dense(actual, query, keys, labels, propagate_labels_reference(query, keys, labels, **args), **args)


@pytest.mark.parametrize("dtype", [pytest.param(p.values[0], id=p.id, marks=needs_gpu) for p in KERNEL_DTYPES])
def test_triton_matches_reference_at_davis_size(dtype, device):
    """DAVIS-size shapes: too slow for the Triton interpreter, so on a GPU only."""
    grid = (30, 55)  # ViT-S/16 at 480x880
    query, keys, labels = random_inputs(grid, 21, channels=384, classes=8, dtype=dtype, device=device, seed=1)
    args = dict(grid=grid, topk=7, temperature=0.7, radius=20, window="circle", global_frames=1)
    with use_backend("triton"):
        actual = propagate_labels(query, keys, labels, **args)
    # The kept top-k is re-scored in fp32, so only a true top-k key that fell out of the fast
    # candidates (more than MARGIN near-ties) could move the output; none should at this size.
    assert_matches_dense(actual, query, keys, labels, propagate_labels_reference(query, keys, labels, **args), **args)


UNSUPPORTED = [
    ("topk = 33", dict(topk=33)),
    ("K = 65", dict(classes=65)),
    ("C = 769", dict(channels=769)),
    ("query is torch.float32 but keys are torch.float16", dict(keys_dtype=torch.float16)),
    ("not fp32 / fp16 / bf16", dict(dtype=torch.float64)),
    ("requires grad", dict(requires_grad=True)),
]


@pytest.mark.parametrize("reason,change", UNSUPPORTED, ids=[reason for reason, _ in UNSUPPORTED])
def test_forced_triton_lists_why_it_cannot_run(reason, change, device):
    query, keys, labels = random_inputs((4, 5), 2, channels=change.get("channels", 16), classes=change.get("classes", 3),
                                        dtype=change.get("dtype", torch.float32), device=device)
    keys = keys.to(change.get("keys_dtype", keys.dtype)).requires_grad_(change.get("requires_grad", False))
    args = dict(grid=(4, 5), topk=change.get("topk", 3), temperature=0.1, radius=2)
    with use_backend("triton"), pytest.raises(BackendUnavailable, match=reason):
        propagate_labels(query, keys, labels, **args)
    with use_backend("auto"):  # auto falls back to the reference instead
        torch.testing.assert_close(propagate_labels(query, keys, labels, **args),
                                   propagate_labels_reference(query, keys, labels, **args), rtol=0, atol=0)


@cuda
def test_triton_rescore_orders_keys_fp16_cannot_tell_apart(device):
    """12 keys whose scores differ by 2e-5, below fp16's resolution at 0.9 (4.9e-4): the fast
    products tie, the fp32 re-score must still rank them as the float64 reference does."""
    grid, channels, topk = (4, 4), 16, 5
    n = grid[0] * grid[1]
    query = torch.zeros(n, channels)
    query[:, 0] = 1.0
    close = 0.9 + 2e-5 * torch.arange(12, dtype=torch.float64)
    first = torch.cat([close, torch.full((n * 2 - 12,), 0.5, dtype=torch.float64)])[torch.randperm(2 * n, generator=torch.Generator().manual_seed(0))]
    keys = torch.zeros(2 * n, channels, dtype=torch.float64)
    keys[:, 0], keys[:, 1] = first, (1 - first**2).sqrt()
    keys = keys.float().reshape(2, n, channels)
    labels = torch.rand(2, n, 4, generator=torch.Generator().manual_seed(1)).softmax(-1)
    args = dict(grid=grid, topk=topk, temperature=1e-4, radius=None)
    with use_backend("triton"):
        actual = propagate_labels(query.to(device), keys.to(device), labels.to(device), **args)
    assert_matches_dense(actual.cpu(), query, keys, labels, propagate_labels_reference(query, keys, labels, **args), **args)


@cuda
@pytest.mark.parametrize("splits,radius,global_frames", [(2, None, 1), (3, 3, 1), (8, 2.5, 0)])
def test_triton_split_walks_merge_to_the_same_result(splits, radius, global_frames, device):
    """The key walk split over programs (as on a GPU with many processors) and merged after."""
    from smae.kernels.propagation_triton import propagate_labels_triton

    grid = (9, 10)  # 2 x 2 query tiles; splits that divide the work list unevenly (8: some get none)
    query, keys, labels = random_inputs(grid, 2, channels=24, classes=3, device=device, seed=4)
    args = dict(grid=grid, topk=6, temperature=0.1, radius=radius, window="circle", global_frames=global_frames)
    actual = propagate_labels_triton(query, keys, labels, **args, splits=splits)
    assert_matches_dense(actual, query, keys, labels, propagate_labels_reference(query, keys, labels, **args), **args)
