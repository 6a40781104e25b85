"""Independent float64 formulations of the kernels' specifications, written as loops so they
share no code with the references they check."""
import torch


def mae_loss_float64(pred, imgs, mask, patch_size, norm_pix=True, eps=1e-6):
    """Per patch with explicit loops over the grid: patch pixels in (p, q, c) order."""
    batch, channels, height, width = imgs.shape
    grid_w = width // patch_size
    total, count = torch.zeros((), dtype=torch.float64), torch.zeros((), dtype=torch.float64)
    for b in range(batch):
        for l in range(mask.shape[1]):
            i, j = divmod(l, grid_w)
            patch = imgs[b, :, i * patch_size:(i + 1) * patch_size, j * patch_size:(j + 1) * patch_size]
            target = patch.double().permute(1, 2, 0).reshape(-1)  # (p, q, c)
            if norm_pix:
                n = target.numel()
                mean = target.sum() / n
                var = ((target - mean) ** 2).sum() / (n - 1)
                target = (target - mean) / torch.sqrt(var + eps)
            error = ((pred[b, l].double() - target) ** 2).mean()
            total = total + error * mask[b, l].double()
            count = count + mask[b, l].double()
    return total / count


def loop_gather(tokens, ids_keep, pos):
    """tokens[b, ids_keep[b, k]] + pos[ids_keep[b, k]], one element row at a time."""
    out = torch.empty(ids_keep.shape + tokens.shape[-1:], dtype=torch.float64)
    for b in range(ids_keep.shape[0]):
        for k, index in enumerate(ids_keep[b].tolist()):
            out[b, k] = tokens[b, index].double() + pos[index].double()
    return out


def loop_scatter(visible, ids_restore, mask_token, pos, prefix):
    """MAE's unshuffle with the mask token and position embeddings, one row at a time."""
    batch, length = ids_restore.shape
    out = torch.empty(batch, prefix + length, visible.shape[-1], dtype=torch.float64)
    kept = visible.shape[1] - prefix
    for b in range(batch):
        out[b, :prefix] = visible[b, :prefix].double()
        for l in range(length):
            rank = ids_restore[b, l].item()
            out[b, prefix + l] = visible[b, prefix + rank].double() if rank < kept else mask_token.double()
    return out + pos.double()
