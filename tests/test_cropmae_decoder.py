"""smae's SiamMAE is CropMAE's (alexandre-eymael/CropMAE models/SiamMAE.py): a state dict with
CropMAE's key names and shapes, built here by hand, loads into it, and the forward pass equals an
independent float64 formulation (tests/float64_specs.py) that reads those keys directly."""
import dataclasses
import math

import pytest
import torch

import smae
from smae.models import DECODERS, DecoderConfig, WeightsError, model_config

from float64_specs import siammae_forward_float64


def cropmae_shapes(name: str) -> dict[str, tuple[int, ...]]:
    """CropMAE's SiamMAE state dict for the sizes of smae preset `name`: MAE's MaskedAutoencoderViT
    (timm encoder keys at the top level, decoder_embed, mask_token, decoder_pos_embed, decoder_norm,
    decoder_pred) with decoder_blocks of nn.TransformerDecoderLayer names (self_attn, multihead_attn,
    linear1, linear2, norm1-3)."""
    config = model_config(name)
    enc, dec = config.encoder, config.decoder
    width, patch, tokens = enc.embed_dim, enc.patch_size, (enc.img_size // enc.patch_size) ** 2
    hidden = int(width * enc.mlp_ratio)
    shapes = {"cls_token": (1, 1, width), "pos_embed": (1, 1 + tokens, width),
              "patch_embed.proj.weight": (width, 3, patch, patch), "patch_embed.proj.bias": (width,)}
    for b in range(enc.depth):
        shapes |= {f"blocks.{b}.norm1.weight": (width,), f"blocks.{b}.norm1.bias": (width,),
                   f"blocks.{b}.attn.qkv.weight": (3 * width, width), f"blocks.{b}.attn.qkv.bias": (3 * width,),
                   f"blocks.{b}.attn.proj.weight": (width, width), f"blocks.{b}.attn.proj.bias": (width,),
                   f"blocks.{b}.norm2.weight": (width,), f"blocks.{b}.norm2.bias": (width,),
                   f"blocks.{b}.mlp.fc1.weight": (hidden, width), f"blocks.{b}.mlp.fc1.bias": (hidden,),
                   f"blocks.{b}.mlp.fc2.weight": (width, hidden), f"blocks.{b}.mlp.fc2.bias": (width,)}
    d = dec.embed_dim
    shapes |= {"norm.weight": (width,), "norm.bias": (width,), "decoder_embed.weight": (d, width), "decoder_embed.bias": (d,),
               "mask_token": (1, 1, d), "decoder_pos_embed": (1, 1 + tokens, d)}
    for b in range(dec.depth):
        p = f"decoder_blocks.{b}"
        for attn in ("self_attn", "multihead_attn"):
            shapes |= {f"{p}.{attn}.in_proj_weight": (3 * d, d), f"{p}.{attn}.in_proj_bias": (3 * d,),
                       f"{p}.{attn}.out_proj.weight": (d, d), f"{p}.{attn}.out_proj.bias": (d,)}
        shapes |= {f"{p}.linear1.weight": (dec.mlp_hidden, d), f"{p}.linear1.bias": (dec.mlp_hidden,),
                   f"{p}.linear2.weight": (d, dec.mlp_hidden), f"{p}.linear2.bias": (d,)}
        shapes |= {f"{p}.norm{i}.{w}": (d,) for i in (1, 2, 3) for w in ("weight", "bias")}
    shapes |= {"decoder_norm.weight": (d,), "decoder_norm.bias": (d,),
               "decoder_pred.weight": (patch * patch * 3, d), "decoder_pred.bias": (patch * patch * 3,)}
    return shapes


def cropmae_state_dict(name: str = "tiny", seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights in CropMAE's layout: no table, norm or bias is trivial (learned-looking
    position tables, so a dropped [CLS] position would show)."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in cropmae_shapes(name).items():
        scale = 1 / math.sqrt(shape[-1]) if len(shape) == 2 else 0.2
        value = torch.randn(shape, generator=generator) * scale
        state[key] = 1 + value if ("norm" in key and key.endswith("weight")) else value
    return state


@pytest.mark.parametrize("decoder", ["cropmae", "dectiny"])
def test_tiny_siammae_equals_the_float64_specification(decoder):
    """With CropMAE's decoder blocks (post-norm, no position table on f1) and with the `tiny`
    preset's own (pre-norm, position table on f1 too), same weights, same keys."""
    state = cropmae_state_dict("tiny", seed=1)
    tiny = DECODERS["dectiny"]
    assert (tiny.norm_first, tiny.past_pos_embed) == (True, True)
    chosen = tiny if decoder == "dectiny" else dataclasses.replace(tiny, norm_first=False, past_pos_embed=False)
    model = smae.build_model("tiny", decoder=chosen, weights=state).double().eval()
    f1, f2 = torch.randn(2, 2, 3, 64, 64, dtype=torch.float64).unbind(0)
    with torch.no_grad():
        loss, pred, mask = model(f1, f2, generator=torch.Generator().manual_seed(4))
    assert mask.sum(1).tolist() == [64 - 3, 64 - 3]  # int(64 * 0.05) = 3 visible patches
    config = model_config("tiny")
    want_loss, want_pred = siammae_forward_float64(state, f1, f2, mask, 8, config.encoder.num_heads, config.decoder.num_heads,
                                                   norm_first=chosen.norm_first, past_pos_embed=chosen.past_pos_embed)
    torch.testing.assert_close(pred, want_pred, rtol=0, atol=1e-10)
    torch.testing.assert_close(loss, want_loss, rtol=0, atol=1e-10)


def test_vits16_takes_cropmae_checkpoints():
    """vits16 is CropMAE's siam_mae_vit_small (decoder 256 wide, 4 blocks, MLP 2048)."""
    state = cropmae_state_dict("vits16")
    model = smae.build_model("vits16", weights=state)
    torch.testing.assert_close(model.decoder.blocks[3].norm_self.bias, state["decoder_blocks.3.norm1.bias"])
    torch.testing.assert_close(model.decoder.blocks[0].mlp.fc1.weight, state["decoder_blocks.0.linear1.weight"])
    torch.testing.assert_close(model.encoder.blocks[11].attn.qkv.weight, state["blocks.11.attn.qkv.weight"])


def test_a_checkpoint_of_other_sizes_is_refused_clearly():
    with pytest.raises(WeightsError, match="shapes do not match this SiamMAE"):
        smae.build_model("tiny", weights=cropmae_state_dict("tiny") | {"decoder_blocks.0.linear1.weight": torch.zeros(2048, 128)})
    state = cropmae_state_dict("tiny")
    del state["decoder_blocks.1.norm3.weight"]
    with pytest.raises(WeightsError, match=r"missing keys \['decoder.blocks.1.norm_mlp.weight'\]"):
        smae.build_model("tiny", weights=state)


def test_decoder_settings_and_initialisation_are_cropmaes():
    assert (DECODERS["dec256d4b"].mlp_hidden, DECODERS["dec256d4b"].dropout) == (2048, 0.1)
    model = smae.build_model("vits16")
    block = model.decoder.blocks[0]
    packed = block.cross_attn.qkv.weight  # one xavier-uniform over the (3D, D) matrix, as nn.MultiheadAttention
    bound = math.sqrt(6 / (256 + 3 * 256))
    assert packed.shape == (768, 256) and 0.95 * bound < packed.abs().max() <= bound
    assert block.cross_attn.qkv.bias.abs().max() == 0 and block.mlp.fc1.weight.shape == (2048, 256)


def test_dropout_acts_in_training_only():
    torch.manual_seed(0)
    model = smae.build_model("tiny", decoder=DecoderConfig(embed_dim=64, depth=1, num_heads=2, mlp_hidden=128, dropout=0.1))
    f1, f2 = torch.randn(2, 1, 3, 64, 64).unbind(0)

    def prediction():
        return model(f1, f2, generator=torch.Generator().manual_seed(0))[1]

    model.eval()
    torch.testing.assert_close(prediction(), prediction(), rtol=0, atol=0)
    model.train()
    assert (prediction() - prediction()).abs().max() > 1e-3
