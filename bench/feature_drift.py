"""What a checkpoint's features encode: grid position or colour, against its random init.

    python bench/feature_drift.py --davis DAVIS_ROOT RUN/checkpoint.pt [MORE/checkpoint.pt ...]

Label propagation compares unit-normalised features by their dot product, so a feature that
mostly says where a patch sits in the frame pulls labels to the same place in the next frame
whatever moved there. For each checkpoint and for the weights its run started from, on every
10th frame of the DAVIS-layout set under DAVIS_ROOT (the demo protocol's frame size), prints:

- position share: the fraction of the normalised features' variance explained by the grid cell
  alone (variance of the per-cell mean over frames, over the total); a feature that ignores
  position still gets about 1 / frames from sampling, printed as the floor;
- colour R2: the fraction explained by a linear function of the patch's mean RGB.

Used to trace the fall of the learning curve (docs/demo.md#the-learning-curve).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

FRAME_STEP = 10  # every 10th frame: neighbouring frames would mostly repeat each other


def held_out_frames(davis_root: Path):
    """(F, 3, H, W) every FRAME_STEP-th frame of each sequence of the set, listed, resized and
    normalised as the demo's propagation reads them (smae.propagation.videos, demo protocol)."""
    import torch

    from smae.demo import demo_protocol
    from smae.propagation.videos import iter_frame_batches, list_videos

    protocol, device = demo_protocol(), torch.device("cpu")
    chosen = [path for video in list_videos("davis", davis_root) for path in video.frames[::FRAME_STEP]]
    return torch.cat([batch.pixels for batch in iter_frame_batches(tuple(chosen), protocol, 1, 32, device)])


def shares(features, frames, patch: int) -> dict:
    """features (F, h, w, C) of frames (F, 3, H, W) -> {"position", "colour"} variance shares."""
    import torch
    import torch.nn.functional as F

    unit = F.normalize(features, dim=-1)
    centred = unit - unit.mean((0, 1, 2))
    total = centred.pow(2).sum(-1).mean()
    position = centred.mean(0).pow(2).sum(-1).mean() / total
    flat = centred.reshape(-1, centred.shape[-1])
    colour = F.avg_pool2d(frames, patch).permute(0, 2, 3, 1).reshape(-1, 3)
    design = torch.cat([colour, torch.ones(len(colour), 1)], 1)
    residual = flat - design @ torch.linalg.lstsq(design, flat).solution
    return {"position": float(position), "colour": float(1 - residual.pow(2).sum(-1).mean() / total)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--davis", type=Path, required=True, help="DAVIS-layout root (e.g. a learning curve's held-out set)")
    parser.add_argument("checkpoints", type=Path, nargs="+")
    args = parser.parse_args(argv)
    if not (args.davis / "JPEGImages" / "480p").is_dir():
        print(f"--davis {args.davis}: no JPEGImages/480p folder in it; give a DAVIS-layout root "
              f"(a learning curve's DIR/data-davis-1000/davis)", file=sys.stderr)
        return 2
    missing = [str(path) for path in args.checkpoints if not path.is_file()]
    if missing:
        print(f"checkpoint not found: {', '.join(missing)}; give RUN/checkpoint.pt of a pre-training run",
              file=sys.stderr)
        return 2

    from smae.demo import trained_and_initial
    from smae.propagation.features import EncoderFeatures

    frames = held_out_frames(args.davis)
    print(f"{len(frames)} frames; position share floor ~{1 / len(frames):.3f}")
    for path in args.checkpoints:
        config, trained, initial = trained_and_initial(path)
        for name, model in (("random init", initial), ("trained", trained)):
            result = shares(EncoderFeatures(model.encoder)(frames), frames, config.model.encoder.patch_size)
            print(f"{path}  {name:<11}  position share {result['position']:.3f}  colour R2 {result['colour']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
