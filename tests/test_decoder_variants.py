"""The ablation settings of SiamMAE, pinned by behaviour: a masked past frame (`past_mask_ratio`)
and the `cross` / `joint` decoders (paper section 3 and Table 2).

- past_mask_ratio r > 0: f1 is masked per sample at r, and the prediction depends on f1's visible
  patches only; r = 0: f1 whole, no mask drawn for it.
- cross: cross-attention and MLP only, no attention among f2's tokens, so a token's output
  depends on f2 through that token alone: a masked patch's prediction ignores f2's pixels.
- joint: self-attention over f1's and f2's tokens together; f2's part is read out.
Each decoder block is also held to a written-out float64 formulation (per head, per sublayer).
"""
from __future__ import annotations

import pytest
import torch
from float64_specs import gelu, layer_norm, linear, multi_head_attention

import smae
from smae.models import siammae as siammae_module
from smae.models.decoder import SiamDecoder
from smae.models.masking import num_visible

LENGTH = 64  # the tiny preset: 64x64 frames, 8x8 patches


def _model(**overrides):
    torch.manual_seed(0)
    return smae.build_model("tiny", **overrides).double().eval()


def _frames(batch=2, seed=0):
    return torch.randn(2, batch, 3, 64, 64, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).unbind(0)


def _run(model, f1, f2, seed=7):
    """loss, pred, f2's mask, and every mask drawn in the pass (in order) with the decoder's past
    tokens (B, 1 + K1, D), for masks drawn from a fixed seed."""
    drawn, past = [], []
    real = siammae_module.random_masking

    def recording(*args, **kwargs):
        drawn.append(real(*args, **kwargs))
        return drawn[-1]

    handle = model.decoder.register_forward_pre_hook(lambda module, inputs: past.append(inputs[1]))
    siammae_module.random_masking = recording
    try:
        with torch.no_grad():
            loss, pred, mask = model(f1, f2, generator=torch.Generator().manual_seed(seed))
    finally:
        siammae_module.random_masking = real
        handle.remove()
    return loss, pred, mask, drawn, past[0]


def _patch_pixels(mask_row: torch.Tensor) -> torch.Tensor:
    """(3, 64, 64) bool: the pixels of the patches where mask_row (L,) is 1."""
    cells = mask_row.bool().reshape(8, 8)
    return cells.repeat_interleave(8, 0).repeat_interleave(8, 1).expand(3, 64, 64)


# --- past_mask_ratio --------------------------------------------------------------------------------


def test_past_frame_is_masked_per_sample_at_its_ratio():
    model = _model(past_mask_ratio=0.75)
    f1, f2 = _frames(batch=3)
    _, _, mask, drawn, past = _run(model, f1, f2)
    assert len(drawn) == 2 and torch.equal(drawn[1].mask, mask)  # f1's mask first, then f2's
    past_mask = drawn[0].mask
    kept = num_visible(LENGTH, 0.75)
    assert kept == 16 and (past_mask.sum(1) == LENGTH - kept).all()
    assert len({tuple(row.tolist()) for row in past_mask}) == 3  # each sample its own
    assert past.shape == (3, 1 + kept, model.config.decoder.embed_dim)  # [CLS] + f1's visible tokens only
    assert (mask.sum(1) == LENGTH - num_visible(LENGTH, 0.95)).all()  # f2's ratio is its own


def test_prediction_depends_on_the_visible_past_patches_only():
    model = _model(past_mask_ratio=0.5)
    f1, f2 = _frames(seed=1)
    loss, pred, _, drawn, _ = _run(model, f1, f2)
    past_mask = drawn[0].mask

    hidden = f1.clone()
    hidden[0][_patch_pixels(past_mask[0])] += 5 * torch.randn(int(past_mask[0].sum()) * 192, dtype=torch.float64)
    hidden_loss, hidden_pred = _run(model, hidden, f2)[:2]
    torch.testing.assert_close(hidden_pred, pred, rtol=0, atol=0)
    torch.testing.assert_close(hidden_loss, loss, rtol=0, atol=0)

    one_visible = torch.zeros(LENGTH)
    one_visible[int((past_mask[0] == 0).nonzero()[0])] = 1
    seen = f1.clone()
    seen[0][_patch_pixels(one_visible)] += 1.0
    seen_pred = _run(model, seen, f2)[1]
    assert (seen_pred[0] - pred[0]).abs().max() > 1e-4  # a visible f1 patch moves sample 0's prediction
    torch.testing.assert_close(seen_pred[1], pred[1], rtol=0, atol=0)  # and only sample 0's


def test_zero_past_mask_ratio_keeps_the_whole_past_frame():
    model = _model()
    assert model.config.past_mask_ratio == 0
    _, pred, mask, drawn, past = _run(model, *_frames(seed=2))
    assert len(drawn) == 1 and torch.equal(drawn[0].mask, mask)  # only f2's mask is drawn
    assert past.shape[1] == 1 + LENGTH


def test_past_position_embeddings_follow_the_kept_past_patches():
    """The `tiny` decoder (past_pos_embed) adds the decoder position table to f1's tokens: [CLS]'s
    row to [CLS], and each kept patch its own position's row, in the shuffled order it is kept."""
    model = _model(past_mask_ratio=0.5)
    assert model.config.decoder.past_pos_embed
    f1, f2 = _frames(batch=2, seed=3)
    _, _, _, drawn, past = _run(model, f1, f2)
    keep = drawn[0].ids_keep  # (B, K1)
    with torch.no_grad():
        embedded = model.decoder_embed(model.encoder(f1, keep))  # (B, 1 + K1, D)
    table = model.decoder_pos_embed[0]  # (1 + L, D)
    for b in range(2):
        rows = torch.cat([table[:1], table[1 + keep[b]]])
        torch.testing.assert_close(past[b], embedded[b] + rows, rtol=0, atol=1e-12)


# --- cross and joint decoders -------------------------------------------------------------------------


def _randomised(decoder: SiamDecoder, seed: int = 0) -> SiamDecoder:
    """float64, eval, every parameter random (norm weights near 1), so no term can vanish."""
    generator = torch.Generator().manual_seed(seed)
    decoder = decoder.double().eval()
    with torch.no_grad():
        for name, param in decoder.named_parameters():
            noise = torch.randn(param.shape, generator=generator, dtype=torch.float64)
            scale = 1 / param.shape[-1] ** 0.5 if param.dim() == 2 else 0.2
            param.copy_(1 + 0.2 * noise if "norm" in name and name.endswith("weight") else noise * scale)
    return decoder


def decoder_float64(state: dict, variant: str, future: torch.Tensor, past: torch.Tensor, heads: int) -> torch.Tensor:
    """The decoder of `variant` written out per sample from the paper's description; future
    (B, N2, D), past (B, N1, D) -> (B, N2, D). Post-norm sublayers x = norm(x + f(x)):
    cross-self: cross-attention to past, MLP, self-attention; cross: cross-attention, MLP;
    joint: self-attention over [past, future], MLP, f2's rows read out; a final LayerNorm."""
    depth = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks."))
    outputs = []
    for b in range(future.shape[0]):
        x = torch.cat([past[b], future[b]]) if variant == "joint" else future[b]
        for block in range(depth):
            p = f"blocks.{block}"

            def attend(queries, keys_values, kind):
                weights = [state[f"{p}.{kind}.{n}"] for n in ("qkv.weight", "qkv.bias", "proj.weight", "proj.bias")]
                return multi_head_attention(queries, keys_values, *weights, heads)

            for sublayer in {"cross-self": ("cross", "mlp", "self"), "cross": ("cross", "mlp"), "joint": ("self", "mlp")}[variant]:
                if sublayer == "cross":
                    x = layer_norm(x + attend(x, past[b], "cross_attn"), state, f"{p}.norm_cross")
                elif sublayer == "self":
                    x = layer_norm(x + attend(x, x, "self_attn"), state, f"{p}.norm_self")
                else:
                    x = layer_norm(x + linear(gelu(linear(x, state, f"{p}.mlp.fc1")), state, f"{p}.mlp.fc2"), state, f"{p}.norm_mlp")
        outputs.append(layer_norm(x[past.shape[1]:] if variant == "joint" else x, state, "norm"))
    return torch.stack(outputs)


VARIANTS = ["cross-self", "cross", "joint"]


def _decoder_inputs(seed=1, batch=2, future_len=7, past_len=5, dim=16):
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, future_len, dim, generator=generator, dtype=torch.float64),
            torch.randn(batch, past_len, dim, generator=generator, dtype=torch.float64))


@pytest.mark.parametrize("variant", VARIANTS)
def test_decoder_equals_the_written_out_float64_formulation(variant):
    decoder = _randomised(SiamDecoder(variant, dim=16, depth=2, num_heads=4, mlp_hidden=24, dropout=0.1))
    future, past = _decoder_inputs()
    with torch.no_grad():
        got = decoder(future, past)
    want = decoder_float64(decoder.state_dict(), variant, future, past, heads=4)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-10)


def _jacobian_to_future(decoder, future, past) -> torch.Tensor:
    """(N2, N2): the largest |d out[b, i, :] / d future[b, j, :]| over the batch and channels."""
    jac = torch.autograd.functional.jacobian(lambda f: decoder(f, past), future)  # (B, N2, D, B, N2, D)
    same_sample = torch.stack([jac[b, :, :, b] for b in range(future.shape[0])])  # (B, N2, D, N2, D)
    return same_sample.abs().amax(dim=(0, 2, 4))


@pytest.mark.parametrize("variant", VARIANTS)
def test_only_the_cross_decoder_keeps_f2_tokens_apart(variant):
    """cross: each f2 token's output depends on f2 through that token alone (no attention among
    them); cross-self and joint mix every f2 token into every other. All three read f1."""
    decoder = _randomised(SiamDecoder(variant, dim=16, depth=2, num_heads=4, mlp_hidden=24, dropout=0.0))
    future, past = _decoder_inputs(seed=2)
    between = _jacobian_to_future(decoder, future, past)
    off_diagonal = between[~torch.eye(between.shape[0], dtype=torch.bool)]
    assert (between.diagonal() > 1e-3).all()
    if variant == "cross":
        assert off_diagonal.max() < 1e-12, off_diagonal.max()
    else:
        assert off_diagonal.min() > 1e-6, off_diagonal.min()
    to_past = torch.autograd.functional.jacobian(lambda p: decoder(future, p), past)
    assert to_past.abs().amax() > 1e-3


@pytest.mark.parametrize("variant", VARIANTS)
def test_masked_predictions_read_f2_pixels_except_with_the_cross_decoder(variant):
    """Same masks, f2 replaced by another frame: with `cross` the predictions of f2's masked
    patches stay as they were (they see f2 only through the mask token and its position);
    cross-self and joint read f2's visible tokens, so theirs change."""
    model = _model(decoder_variant=variant)
    f1, f2 = _frames(seed=3)
    other = _frames(seed=4)[1]
    _, pred, mask = _run(model, f1, f2)[:3]
    _, other_pred, other_mask = _run(model, f1, other)[:3]
    assert torch.equal(mask, other_mask)
    masked = mask.bool()
    change = (other_pred - pred)[masked].abs().max()
    if variant == "cross":
        assert change < 1e-12, change
    else:
        assert change > 1e-3, change


def test_joint_decoder_attends_to_f1_and_f2_in_one_softmax():
    """joint's attention over [f1, f2] is one softmax over both frames' keys: with f1's tokens
    replaced by copies of f2's the attention weights of each key halve and the values double,
    so one joint block gives what a block of self-attention over f2 alone gives (cross-self's
    `self` sublayer has the same shape): here with the MLP, the norms and the final norm."""
    decoder = _randomised(SiamDecoder("joint", dim=16, depth=1, num_heads=4, mlp_hidden=24, dropout=0.0))
    future, _ = _decoder_inputs(seed=5)
    with torch.no_grad():
        doubled = decoder(future, future.clone())  # keys [f2, f2]
    state = decoder.state_dict()
    alone = torch.stack([decoder_float64(state, "joint", future[b:b + 1], future[b:b + 1, :0], heads=4)[0]
                         for b in range(future.shape[0])])  # keys f2 only
    torch.testing.assert_close(doubled, alone, rtol=0, atol=1e-10)
