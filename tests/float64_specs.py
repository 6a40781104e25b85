"""Independent float64 formulations of the kernels' specifications, written as loops so they
share no code with the references they check.

The kernel specs take `dtype`, the precision they compute in: float64 (the default) is the
specification; a lower one gives plain PyTorch's own error in that precision, the baseline of
the tolerance rule (tests/tolerance.py) when a reference is checked against them."""
import torch


def mae_loss_float64(pred, imgs, mask, patch_size, norm_pix=True, eps=1e-6, dtype=torch.float64):
    """Per patch with explicit loops over the grid: patch pixels in (p, q, c) order."""
    batch, channels, height, width = imgs.shape
    grid_w = width // patch_size
    total, count = torch.zeros((), dtype=dtype), torch.zeros((), dtype=dtype)
    for b in range(batch):
        for l in range(mask.shape[1]):
            i, j = divmod(l, grid_w)
            patch = imgs[b, :, i * patch_size:(i + 1) * patch_size, j * patch_size:(j + 1) * patch_size]
            target = patch.to(dtype).permute(1, 2, 0).reshape(-1)  # (p, q, c)
            if norm_pix:
                n = target.numel()
                mean = target.sum() / n
                var = ((target - mean) ** 2).sum() / (n - 1)
                target = (target - mean) / torch.sqrt(var + eps)
            error = ((pred[b, l].to(dtype) - target) ** 2).mean()
            total = total + error * mask[b, l].to(dtype)
            count = count + mask[b, l].to(dtype)
    return total / count


def loop_gather(tokens, ids_keep, pos, dtype=torch.float64):
    """tokens[b, ids_keep[b, k]] (+ pos[ids_keep[b, k]] unless pos is None), one row at a time."""
    out = torch.empty(ids_keep.shape + tokens.shape[-1:], dtype=dtype, device=tokens.device)
    for b in range(ids_keep.shape[0]):
        for k, index in enumerate(ids_keep[b].tolist()):
            out[b, k] = tokens[b, index].to(dtype) + (0 if pos is None else pos[index].to(dtype))
    return out


def loop_patches(imgs, ids_keep, size, dtype=torch.float64):
    """(B, K, C*p*p): each kept patch sliced out of the image, flattened (c, p, q)."""
    width = imgs.shape[-1] // size
    rows = []
    for b in range(ids_keep.shape[0]):
        for index in ids_keep[b].tolist():
            i, j = divmod(index, width)
            rows.append(imgs[b, :, i * size:(i + 1) * size, j * size:(j + 1) * size].to(dtype).reshape(-1))
    return torch.stack(rows).reshape(ids_keep.shape[0], ids_keep.shape[1], -1)


def loop_scatter(visible, ids_restore, mask_token, pos, prefix, dtype=torch.float64):
    """MAE's unshuffle with the mask token and position embeddings, one row at a time."""
    batch, length = ids_restore.shape
    out = torch.empty(batch, prefix + length, visible.shape[-1], dtype=dtype, device=visible.device)
    kept = visible.shape[1] - prefix
    for b in range(batch):
        out[b, :prefix] = visible[b, :prefix].to(dtype)
        for l in range(length):
            rank = ids_restore[b, l].item()
            out[b, prefix + l] = visible[b, prefix + rank].to(dtype) if rank < kept else mask_token.to(dtype)
    return out + pos.to(dtype)


# --- SiamMAE forward pass, written from the papers and CropMAE's models/SiamMAE.py -------------
# Every function takes CropMAE's key names (timm names for the encoder, nn.TransformerDecoderLayer
# names for the decoder), so the specification shares no code or naming with smae's modules.


def layer_norm(x, state, name, eps=1e-6):
    """LayerNorm over the last (channel) axis, biased variance."""
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * state[f"{name}.weight"].double() + state[f"{name}.bias"].double()


def gelu(x):
    return 0.5 * x * (1 + torch.erf(x / 2**0.5))


def linear(x, state, name):
    return x @ state[f"{name}.weight"].double().T + state[f"{name}.bias"].double()


def multi_head_attention(queries, keys_values, weight, bias, out_weight, out_bias, heads):
    """nn.MultiheadAttention: queries (Nq, D), keys_values (Nk, D); weight (3D, D) packs q, k, v."""
    dim = queries.shape[-1]
    head_dim = dim // heads
    q = queries @ weight[:dim].double().T + bias[:dim].double()
    k = keys_values @ weight[dim:2 * dim].double().T + bias[dim:2 * dim].double()
    v = keys_values @ weight[2 * dim:].double().T + bias[2 * dim:].double()
    out = torch.empty_like(q)
    for h in range(heads):
        cols = slice(h * head_dim, (h + 1) * head_dim)
        weights = torch.softmax(q[:, cols] @ k[:, cols].T / head_dim**0.5, dim=-1)  # (Nq, Nk)
        out[:, cols] = weights @ v[:, cols]
    return out @ out_weight.double().T + out_bias.double()


def vit_encoder(state, image, positions, patch, heads):
    """timm's pre-norm ViT on one image (3, H, W), only the patches at `positions` (row-major
    indices): [CLS] + pos[0], then each patch's pixels in (c, p, q) order through the patch
    embedding + pos[1 + position]; blocks x += attn(norm1 x), x += mlp(norm2 x); final norm."""
    grid_w = image.shape[-1] // patch
    proj = state["patch_embed.proj.weight"].double().reshape(state["patch_embed.proj.weight"].shape[0], -1)
    pos = state["pos_embed"][0].double()
    tokens = [state["cls_token"][0, 0].double() + pos[0]]
    for position in positions:
        i, j = divmod(position, grid_w)
        pixels = image[:, i * patch:(i + 1) * patch, j * patch:(j + 1) * patch].double().reshape(-1)
        tokens.append(proj @ pixels + state["patch_embed.proj.bias"].double() + pos[1 + position])
    x = torch.stack(tokens)
    depth = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks."))
    for b in range(depth):
        p = f"blocks.{b}"
        h = layer_norm(x, state, f"{p}.norm1")
        qkv = state[f"{p}.attn.qkv.weight"], state[f"{p}.attn.qkv.bias"]
        x = x + multi_head_attention(h, h, *qkv, state[f"{p}.attn.proj.weight"], state[f"{p}.attn.proj.bias"], heads)
        x = x + linear(gelu(linear(layer_norm(x, state, f"{p}.norm2"), state, f"{p}.mlp.fc1")), state, f"{p}.mlp.fc2")
    return layer_norm(x, state, "norm")


def post_norm_decoder_block(x, memory, state, prefix, heads):
    """CropMAE's DecoderBlock (norm_first=False), eval mode: cross-attention to `memory`, norm2;
    MLP, norm3; self-attention, norm1."""
    cross = [state[f"{prefix}.multihead_attn.{n}"] for n in ("in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias")]
    x = layer_norm(x + multi_head_attention(x, memory, *cross, heads), state, f"{prefix}.norm2")
    x = layer_norm(x + linear(gelu(linear(x, state, f"{prefix}.linear1")), state, f"{prefix}.linear2"), state, f"{prefix}.norm3")
    own = [state[f"{prefix}.self_attn.{n}"] for n in ("in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias")]
    return layer_norm(x + multi_head_attention(x, x, *own, heads), state, f"{prefix}.norm1")


def pre_norm_decoder_block(x, memory, state, prefix, heads):
    """The same sublayers in the same order, pre-norm (the `tiny` preset's decoder): x += cross(
    norm2 x, memory); x += MLP(norm3 x); x += self-attention(norm1 x)."""
    cross = [state[f"{prefix}.multihead_attn.{n}"] for n in ("in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias")]
    x = x + multi_head_attention(layer_norm(x, state, f"{prefix}.norm2"), memory, *cross, heads)
    x = x + linear(gelu(linear(layer_norm(x, state, f"{prefix}.norm3"), state, f"{prefix}.linear1")), state, f"{prefix}.linear2")
    own = [state[f"{prefix}.self_attn.{n}"] for n in ("in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias")]
    h = layer_norm(x, state, f"{prefix}.norm1")
    return x + multi_head_attention(h, h, *own, heads)


def siammae_forward_float64(state, f1, f2, mask, patch, encoder_heads, decoder_heads, norm_first=False,
                            past_pos_embed=False):
    """SiamMAE (cross-self decoder, CropMAE's layout), eval mode, in float64.

    f1, f2 (B, 3, H, W); mask (B, L) 1 = masked. Per sample: f1 encoded whole, f2 from its
    visible patches; the decoder sequence of f2 is [CLS, patch 0 .. L-1] with visible patches'
    embedded tokens and the mask token elsewhere, plus the decoder position table; f1's embedded
    tokens (no position table, or with it when past_pos_embed) are the cross-attention memory;
    blocks post-norm (CropMAE) or pre-norm (norm_first). Returns loss, pred (B, L, p*p*3)."""
    batch, length = mask.shape
    depth = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("decoder_blocks."))
    decoder_block = pre_norm_decoder_block if norm_first else post_norm_decoder_block
    preds = []
    for b in range(batch):
        visible = [l for l in range(length) if mask[b, l] == 0]
        memory = linear(vit_encoder(state, f1[b], list(range(length)), patch, encoder_heads), state, "decoder_embed")
        if past_pos_embed:
            memory = memory + state["decoder_pos_embed"][0].double()
        encoded = linear(vit_encoder(state, f2[b], visible, patch, encoder_heads), state, "decoder_embed")  # (1 + K, D)
        rows = [encoded[0]]
        for l in range(length):
            rows.append(encoded[1 + visible.index(l)] if l in visible else state["mask_token"][0, 0].double())
        x = torch.stack(rows) + state["decoder_pos_embed"][0].double()
        for block in range(depth):
            x = decoder_block(x, memory, state, f"decoder_blocks.{block}", decoder_heads)
        preds.append(linear(layer_norm(x, state, "decoder_norm"), state, "decoder_pred")[1:])  # [CLS] is row 0
    pred = torch.stack(preds)
    return mae_loss_float64(pred, f2, mask, patch), pred
