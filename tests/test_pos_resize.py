"""The three position-table resize rules against an independent float64 formulation that writes
out each rule's sampling coordinates and filter taps (not against F.interpolate itself)."""
import math

import pytest
import torch

import smae
from smae.models.pos_embed import POS_RESIZE_MODES, resize_pos_embed, sincos_2d
from smae.propagation.features import EncoderFeatures
from smae.propagation.protocols import PROTOCOLS, protocol_preset


def cubic(x: float, a: float) -> float:
    """Keys' cubic convolution kernel with parameter a (-0.75: PyTorch bicubic; -0.5: PIL / antialias)."""
    x = abs(x)
    if x <= 1:
        return ((a + 2) * x - (a + 3)) * x * x + 1
    if x < 2:
        return (((x - 5) * x + 8) * x - 4) * a
    return 0.0


def clamped_taps(n_src: int, n_dst: int, denominator: float) -> list[list[tuple[int, float]]]:
    """Output i samples s = (i + 0.5) * n_src / denominator - 0.5 with the 4 taps floor(s) - 1 .. + 2,
    indices clamped to the border. plain: denominator = n_dst; dino: n_dst + 0.1."""
    rows = []
    for i in range(n_dst):
        s = (i + 0.5) * n_src / denominator - 0.5
        left, t = math.floor(s), s - math.floor(s)
        rows.append([(min(max(left + m, 0), n_src - 1), cubic(t - m, -0.75)) for m in (-1, 0, 1, 2)])
    return rows


def antialiased_taps(n_src: int, n_dst: int) -> list[list[tuple[int, float]]]:
    """PIL's resampling: centre (i + 0.5) * scale, the kernel stretched by max(scale, 1), taps only
    inside the source (no clamping), weights normalised to sum 1."""
    scale = n_src / n_dst
    stretch = max(scale, 1.0)
    support = 2 * stretch
    rows = []
    for i in range(n_dst):
        centre = (i + 0.5) * scale
        first, last = max(int(centre - support + 0.5), 0), min(int(centre + support + 0.5), n_src)
        weights = [cubic((j - centre + 0.5) / stretch, -0.5) for j in range(first, last)]
        total = sum(weights)
        rows.append([(j, w / total) for j, w in zip(range(first, last), weights)])
    return rows


def taps_for(mode: str, n_src: int, n_dst: int):
    if mode == "plain":
        return clamped_taps(n_src, n_dst, n_dst)
    if mode == "dino":
        return clamped_taps(n_src, n_dst, n_dst + 0.1)
    return antialiased_taps(n_src, n_dst)


def resize_spec(table: torch.Tensor, src: tuple[int, int], dst: tuple[int, int], mode: str) -> torch.Tensor:
    """(1, 1 + h0*w0, D) -> (1, 1 + h*w, D) in float64, separably: rows, then columns."""
    grid = table[0, 1:].double().reshape(src[0], src[1], -1)
    rows = torch.stack([sum(w * grid[j] for j, w in taps) for taps in taps_for(mode, src[0], dst[0])])  # (h, w0, D)
    out = torch.stack([sum(w * rows[:, j] for j, w in taps) for taps in taps_for(mode, src[1], dst[1])], dim=1)  # (h, w, D)
    return torch.cat([table[0, :1].double(), out.reshape(dst[0] * dst[1], -1)])[None]


@pytest.mark.parametrize("mode", POS_RESIZE_MODES)
@pytest.mark.parametrize("src,dst", [((14, 14), (30, 55)), ((14, 14), (30, 52)), ((4, 6), (9, 5)), ((14, 14), (5, 7))],
                         ids=["vits16-480x880", "vits16-480x832", "odd", "shrink"])
def test_each_rule_matches_its_float64_formulation(mode, src, dst):
    torch.manual_seed(0)
    table = torch.randn(1, 1 + src[0] * src[1], 12, dtype=torch.float64)
    got = resize_pos_embed(table, src, dst, mode)
    torch.testing.assert_close(got, resize_spec(table, src, dst, mode), rtol=0, atol=1e-12)


def test_rules_sample_different_places():
    table = sincos_2d(384, (14, 14)).double()[None]
    results = {mode: resize_pos_embed(table, (14, 14), (30, 55), mode) for mode in POS_RESIZE_MODES}
    for a, b in [("dino", "plain"), ("dino", "timm"), ("timm", "plain")]:
        assert (results[a] - results[b]).abs().max() > 1e-3, (a, b)


@pytest.mark.parametrize("mode", POS_RESIZE_MODES)
def test_native_grid_and_cls_row_are_kept(mode):
    table = torch.randn(1, 1 + 16, 8)
    assert resize_pos_embed(table, (4, 4), (4, 4), mode) is table
    torch.testing.assert_close(resize_pos_embed(table, (4, 4), (6, 10), mode)[0, 0], table[0, 0], rtol=0, atol=0)


@pytest.mark.parametrize("mode", POS_RESIZE_MODES)
def test_get_features_uses_the_rule(mode):
    """The encoder's features with rule `mode` equal those of an encoder whose native table is the
    float64 formulation's resized one (so the rule reaches the forward pass, and nothing else moves)."""
    torch.manual_seed(0)
    encoder = smae.build_encoder("tiny").double().eval()
    frames = torch.randn(1, 3, 48, 80, dtype=torch.float64)
    resized = smae.build_encoder("tiny").double().eval()
    resized.load_state_dict(encoder.state_dict())
    resized.pos_embed = torch.nn.Parameter(resize_spec(encoder.pos_embed, encoder.grid, (6, 10), mode), requires_grad=False)
    resized.grid = (6, 10)
    with torch.no_grad():
        torch.testing.assert_close(encoder.get_features(frames, pos_resize=mode), resized.get_features(frames), rtol=0, atol=1e-10)
        source = EncoderFeatures(encoder.float(), pos_resize=mode)
        torch.testing.assert_close(source(frames.float()).double(), resized.get_features(frames), rtol=0, atol=1e-4)


def test_protocols_name_their_rule_and_unknown_rules_are_refused():
    assert protocol_preset("dino").pos_resize == "dino"
    assert protocol_preset("siammae").pos_resize == "dino"
    assert all(p.pos_resize in POS_RESIZE_MODES for p in PROTOCOLS.values())
    with pytest.raises(ValueError, match="pos_resize"):
        type(protocol_preset("dino"))(pos_resize="nearest")
    with pytest.raises(ValueError, match="choose from dino, timm, plain"):
        resize_pos_embed(torch.zeros(1, 5, 4), (2, 2), (3, 3), "bilinear")
