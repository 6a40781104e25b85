"""Memory probe: peak memory of propagation does not grow with the clip's length.

    OMP_NUM_THREADS=1 SMAE_KERNELS=torch python bench/propagation_memory.py --frames 100 2000 \
        --out bench/results/<date>-cpu-propagation-memory.json

Each length runs in its own process, which propagates a generated DAVIS-size clip (854x480,
textured squares drifting over a textured background; frames made one at a time, never held
whole) from a mask of frame 0 through `smae.propagate`, with raw-pixel features (--features
pixels, patch 16) or a random-init `tiny` encoder, and reports its peak resident memory
(ru_maxrss), CPU and wall seconds per frame, and the context's size in bytes. If memory were
held per frame, 2000 frames would add at least 2000 x 854x480x3 bytes (2.4 GB) of frames alone.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

HEIGHT, WIDTH = 480, 854


def clip_frames(count: int):
    """A FrameSequence of `count` generated frames (H, W, 3) uint8 and the mask of frame 0."""
    import numpy as np

    from smae.propagation.frames import FrameSequence

    rng = np.random.default_rng(0)
    background = rng.integers(0, 256, (HEIGHT + 64, WIDTH + 64, 3), dtype=np.uint8)
    texture = rng.integers(0, 256, (2, 96, 96, 3), dtype=np.uint8)
    corners = [(100, 150), (250, 500)]

    def frame(t: int) -> np.ndarray:
        rgb = background[t % 64: t % 64 + HEIGHT, (2 * t) % 64: (2 * t) % 64 + WIDTH].copy()
        for k, (row, col) in enumerate(corners):
            r, c = row + (t % 40) * (1 if k else -1), col + (t % 60)
            rgb[r:r + 96, c:c + 96] = texture[k]
        return rgb

    mask = np.zeros((HEIGHT, WIDTH), np.uint8)
    for k, (row, col) in enumerate(corners):
        mask[row:row + 96, col:col + 96] = k + 1
    frames = FrameSequence("generated", (HEIGHT, WIDTH), count, None, lambda i: f"{i:05d}",
                           lambda: (frame(t) for t in range(count)))
    return frames, mask


def probe(count: int, features: str) -> dict:
    """Runs in the child: propagates `count` frames, returns its measurements."""
    import warnings

    import smae
    from smae.propagation import PixelFeatures, protocol_preset
    from smae.propagation.features import build_feature_source

    protocol = protocol_preset("siammae", "clip")
    if features == "pixels":
        source = PixelFeatures(stride=16)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the random-init warning: intended (time does not depend on weights)
            source = build_feature_source("encoder", "tiny", None, "cpu")
    frames, mask = clip_frames(count)
    import dataclasses

    protocol = dataclasses.replace(protocol, resize="native")  # 854x480 -> 848x480 at patch 16
    cpu, wall, done = time.process_time(), time.perf_counter(), 0
    for labels in smae.propagate(frames, mask, encoder=source, protocol=protocol, batch_size=8):
        done += 1
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    cells = (HEIGHT // source.stride) * (WIDTH // source.stride)
    channels = 3 * source.cells ** 2 if features == "pixels" else source.encoder.embed_dim
    context = (1 + protocol.n_context) * cells * (channels + 3) * 4
    return {"frames": done, "features": features, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "cpu_s_per_frame": cpu / done, "wall_s_per_frame": wall / done, "context_mib": context / 2**20,
            "input": [HEIGHT // source.stride * source.stride, WIDTH // source.stride * source.stride],
            "protocol": "siammae, resize=native, n_context=20"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[100, 2000], help="clip lengths, one process each")
    parser.add_argument("--features", default="pixels", choices=("pixels", "tiny"))
    parser.add_argument("--out", type=Path, help="also write the rows as JSON here")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(probe(args.child, args.features)))
        return
    rows = []
    for count in args.frames:
        child = subprocess.run([sys.executable, __file__, "--child", str(count), "--features", args.features],
                               check=True, capture_output=True, text=True)
        rows.append(json.loads(child.stdout.splitlines()[-1]))
        print(json.dumps(rows[-1]))
    if args.out:
        import torch

        record = {"command": " ".join(["python", "bench/propagation_memory.py", *sys.argv[1:]]),
                  "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
                  "load_average": os.getloadavg(), "rows": rows}
        args.out.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
