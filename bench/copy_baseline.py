"""How much of SiamMAE's loss plain copying from the past frame could remove, on a set of videos.

    python bench/copy_baseline.py VIDEOS [--pairs 64]

On training pairs of the `tiny` recipe (its crops, gaps and patch size), prints the norm-pix loss
on all patches of f2 of three fixed predictors: zero (the per-patch mean: loss ~1), the f1 patch at
the same position (copying without correspondence), and the best f1 patch within 2 cells (an
oracle correspondence on the patch grid). A trained model far above the oracle and near "same
position" has not learnt to find where content went.
"""
from __future__ import annotations

import argparse

import torch


def normalised_patches(frames: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, 3, H, W) -> (B, H/p, W/p, p*p*3), each patch standardised (MAE's norm-pix target)."""
    from smae.kernels import patchify

    tokens = patchify(frames.float(), patch)
    tokens = (tokens - tokens.mean(-1, keepdim=True)) / (tokens.var(-1, keepdim=True) + 1e-6).sqrt()
    side = frames.shape[-1] // patch
    return tokens.reshape(len(frames), side, side, -1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("videos")
    parser.add_argument("--pairs", type=int, default=64)
    args = parser.parse_args(argv)

    from smae.data.pair_source import open_pair_dataset
    from smae.data.pairs import collate_pairs
    from smae.data.transforms import PairAugment
    from smae.train.config import train_preset

    config = train_preset("tiny")
    patch = config.model.encoder.patch_size
    augment = PairAugment(config.model.encoder.img_size, config.crop_scale, config.crop_ratio, config.flip_prob)
    dataset = open_pair_dataset(args.videos, augment, config.gap_range, config.repeats, config.seed)
    passes = -(-args.pairs // (config.repeats * len(dataset)))
    batch = collate_pairs([dataset[(p, i)] for p in range(passes) for i in range(len(dataset))])
    past, future = (normalised_patches(batch[key][: args.pairs], patch) for key in ("f1", "f2"))
    best = None
    for dy in range(-2, 3):
        for dx in range(-2, 3):
            error = ((torch.roll(past, (dy, dx), (1, 2)) - future) ** 2).mean(-1)
            best = error if best is None else torch.minimum(best, error)
    print(f"zero prediction {(future ** 2).mean():.3f}; f1 at the same position {((past - future) ** 2).mean():.3f}; "
          f"best f1 patch within 2 cells (oracle) {best.mean():.3f}")


if __name__ == "__main__":
    main()
