"""CPU time per frame of `smae propagate` with the default `siammae` protocol (frames resized to
480x880), for encoder presets at their random initialisation (weights do not change the time).

    OMP_NUM_THREADS=1 python bench/propagation_cpu_time.py DAVIS tiny vits16

DAVIS: a DAVIS-2017 root (or `smae synth --preset davis-val-size --formats davis`'s davis/); its
first val sequence is propagated. Frame 0 (its annotation, and warm-up) is not counted. Prints
process CPU seconds per frame (robust to other load on the machine) and wall seconds per frame.
"""
from __future__ import annotations

import argparse
import time
import warnings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", help="DAVIS-2017 root")
    parser.add_argument("presets", nargs="+", help="encoder presets, e.g. tiny vits16")
    parser.add_argument("--frames", type=int, default=8, help="frames timed per preset (after frame 0)")
    args = parser.parse_args()

    from smae.propagation import build_feature_source, protocol_preset
    from smae.propagation.engine import propagate_video
    from smae.propagation.videos import list_videos

    video = list_videos("davis", args.data)[0]
    for preset in args.presets:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the random-init warning: intended here
            source = build_feature_source("encoder", preset, None, "cpu")
        predictions = propagate_video(video, source, protocol_preset("siammae", "davis"), batch_size=1)
        next(predictions)
        cpu, wall, frames = time.process_time(), time.perf_counter(), 0
        for _ in zip(range(args.frames), predictions):
            frames += 1
        print(f"{preset}: {(time.process_time() - cpu) / frames:.2f} CPU s/frame, "
              f"{(time.perf_counter() - wall) / frames:.2f} wall s/frame ({frames} frames of {video.name})")


if __name__ == "__main__":
    main()
