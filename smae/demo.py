"""`smae demo`: the whole method on a 2-core CPU in a few minutes.

1. writes the `tiny` synthetic set (smae synth): pre-training videos and a DAVIS-layout set;
2. pre-trains the `tiny` SiamMAE on the videos (checkpoint and reconstruction figure);
3. propagates the DAVIS set's first-frame masks and scores them (J&F) with three feature
   sources: the trained encoder, the same encoder before training (its random init, same seed),
   and raw pixels (the two encoders side by side in two processes: `score_sources`);
4. prints a table and writes OUT/summary.json:
   {"trained": {"J&F-Mean", "J-Mean", "F-Mean"}, "random_init": {...}, "pixels": {...},
    "seed": N, "seconds": wall time}, and two pictures: OUT/strip.png (the first evaluation
   sequence, frame | ground truth | each source's masks, for a few frames; smae.demo_pictures)
   and OUT/loss.png (the pre-training loss).
Pre-training has learnt correspondence when "trained" beats "random_init"; `smae demo`
(smae.commands.demo) exits with status 1 when it does not.

--seed N seeds both the synthetic set and the run. The evaluation sequences come from the
set's DAVIS stream, which the training videos never draw from (smae.data.synth seeds each video
by (seed, format, index)); the recipe was tuned on another seed's set (bench/learning_curve.py).

OUT (default ./smae-demo) must be new, empty, or a folder an earlier demo wrote (it holds a
.smae-demo marker); the demo's own sub-folders are rebuilt on every run.
"""
from __future__ import annotations

import shutil
import statistics
import time
from pathlib import Path

DEFAULT_OUT = "smae-demo"
MARKER = ".smae-demo"
SYNTH_PRESET = "tiny"
TRAIN_PRESET = "tiny"
SCORE_KEYS = ("J&F-Mean", "J-Mean", "F-Mean")
SOURCES = ("trained", "random_init", "pixels")


def prepare_out_dir(out: Path) -> None:
    """Creates `out` and marks it as the demo's; refuses a folder the demo did not make, and one
    that cannot be written (checked before the minutes of work)."""
    from smae.atomic import check_output_folder
    from smae.errors import UserError

    check_output_folder(out)
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).exists():
        raise UserError(f"--out {out}: not empty and not made by smae demo (no {MARKER}); "
                        f"choose a new or empty folder")
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("written by `smae demo`; the demo may replace this folder's contents\n")


def demo_protocol():
    """SiamMAE's DAVIS protocol (top-7, 20 context frames, radius 20, temperature 0.7) on the
    frames at their own size. Its 480x880 resize is meant for real 480p frames: on the small
    synthetic ones it would show the model objects several times larger than it was trained on,
    and take minutes per feature source."""
    import dataclasses

    from smae.propagation.protocols import protocol_preset

    return dataclasses.replace(protocol_preset("siammae", "davis"), resize="native")


def initial_model(config):
    """The SiamMAE a run of `config` starts from (the loop seeds with config.seed, rank 0)."""
    import torch

    from smae.models import SiamMAE

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return SiamMAE(config.model)


def trained_and_initial(checkpoint_path: Path) -> tuple:
    """(config, trained SiamMAE, the same architecture at the weights the run started from)."""
    from smae.models import SiamMAE
    from smae.train.checkpoint import load_checkpoint
    from smae.train.config import train_config_from_dict

    checkpoint = load_checkpoint(checkpoint_path)
    config = train_config_from_dict(checkpoint["config"], str(checkpoint_path))
    trained = SiamMAE(config.model)
    trained.load_state_dict(checkpoint["model"])
    return config, trained, initial_model(config)


def feature_sources(checkpoint_path: Path) -> dict:
    """name -> feature source: the trained encoder, the same architecture at its initialisation
    (the weights the run started from: same seed), and raw pixels on the same patch grid."""
    from smae.propagation.features import EncoderFeatures, PixelFeatures

    config, trained, initial = trained_and_initial(checkpoint_path)
    patch = config.model.encoder.patch_size
    return {
        "trained": EncoderFeatures(trained.encoder),
        "random_init": EncoderFeatures(initial.encoder),
        "pixels": PixelFeatures(stride=patch, cells=min(4, patch)),
    }


def score_source(source, davis_root: Path, out_dir: Path, log=print) -> dict:
    """Propagates the DAVIS-layout set under `davis_root` with `source` into `out_dir` (demo
    protocol) -> {"J&F-Mean", "J-Mean", "F-Mean"} as floats, and "per_object":
    {"<sequence>_<id>": that object's J&F}."""
    from smae.propagation.pipeline import propagate_dataset

    scores = propagate_dataset("davis", davis_root, out_dir, source, demo_protocol(), progress=False, log=log)
    per_object = {name: (means["J-Mean"] + means["F-Mean"]) / 2 for name, means in scores["per_object"].items()}
    return {**{key: float(scores[key]) for key in SCORE_KEYS}, "per_object": per_object}


def _score_in_worker(job: tuple[str, str, str, str, int]) -> dict:
    """One encoder source's scores, in a worker process: (name, checkpoint, davis_root, out_dir,
    threads) -> score_source's dict."""
    import torch

    name, checkpoint, davis_root, out_dir, threads = job
    torch.set_num_threads(threads)
    return score_source(feature_sources(Path(checkpoint))[name], Path(davis_root), Path(out_dir), log=lambda _: None)


def score_sources(checkpoint: Path, davis_root: Path, results_dir: Path, log=print) -> dict[str, dict]:
    """{name: score_source's dict} for SOURCES, each propagated into results_dir / name.

    The two encoders run side by side, one spawned process each with half the cores: their
    per-frame operations are too small to keep two threads of one process busy (on 2 cores, both
    sources of seed 2's 48-sequence set took 94 s side by side, 134 s one after the other with 2
    threads each, process starts included). Raw pixels, cheap, follow in this process.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from smae.eval.parallel import available_cores

    encoders = SOURCES[:2]
    threads = max(1, available_cores() // len(encoders))
    jobs = [(name, str(checkpoint), str(davis_root), str(results_dir / name), threads) for name in encoders]
    log(f"      {' and '.join(encoders)}: side by side, {threads} thread(s) each")
    with ProcessPoolExecutor(len(jobs), mp_context=multiprocessing.get_context("spawn")) as pool:
        scores = dict(zip(encoders, pool.map(_score_in_worker, jobs)))
    scores["pixels"] = score_source(feature_sources(checkpoint)["pixels"], davis_root, results_dir / "pixels",
                                    log=lambda line: log(f"      pixels: {line}"))
    return scores


def paired_margin(ours: dict[str, float], theirs: dict[str, float]) -> dict:
    """How far one source's per-object J&F lies above another's on the same objects ->
    {"J&F": mean difference, "standard_error": its standard error, "objects": n}.

    Paired object by object: both sources saw the same objects, frames and protocol, so what
    varies is the difference per object. Its mean is the J&F-Mean margin (DAVIS averages J and
    F over objects); the standard error says how much another synthetic set of the same size
    could move it.
    """
    if ours.keys() != theirs.keys() or len(ours) < 2:
        raise ValueError(f"need the same two or more objects in both, got {len(ours)} and {len(theirs)}")
    differences = [ours[name] - theirs[name] for name in ours]
    return {"J&F": statistics.fmean(differences),
            "standard_error": statistics.stdev(differences) / len(differences) ** 0.5, "objects": len(differences)}


def format_table(summary: dict, margins: dict) -> str:
    lines = [f"{'features':<12}" + "".join(f"{key:>10}" for key in SCORE_KEYS)]
    for name, scores in summary.items():
        lines.append(f"{name:<12}" + "".join(f"{100 * scores[key]:>10.1f}" for key in SCORE_KEYS))
    for name, margin in margins.items():
        lines.append(f"trained - {name.replace('_', ' ')}: {100 * margin['J&F']:+.1f} +- "
                     f"{100 * margin['standard_error']:.1f} J&F (standard error over {margin['objects']} objects)")
    return "\n".join(lines)


def run_demo(out: Path, seed: int = 0, synth_preset=SYNTH_PRESET, train_config=None, log=print) -> dict:
    """Runs the four steps into `out` (prepared by `prepare_out_dir`); returns the summary.
    synth_preset / train_config: smaller ones make a quick test of the same path."""
    import dataclasses

    from smae.atomic import write_json_atomic
    from smae.data.synth import FORMAT_DIRS, generate
    from smae.demo_pictures import save_loss_curve, save_strip
    from smae.train.config import train_preset
    from smae.train.loop import train

    start = time.perf_counter()
    data = out / "data"
    log(f"[1/4] synthetic videos and DAVIS-layout set (seed {seed}) -> {data}")
    generate(data, synth_preset, seed=seed, formats=("mp4", "davis"), log=lambda line: log("      " + line))

    run_dir = out / "pretrain"
    shutil.rmtree(run_dir, ignore_errors=True)  # the demo's own previous run
    log(f"[2/4] pre-training the {TRAIN_PRESET} SiamMAE -> {run_dir}")
    config = dataclasses.replace(train_config or train_preset(TRAIN_PRESET), seed=seed)
    result = train(config, data / FORMAT_DIRS["mp4"], run_dir, preset=TRAIN_PRESET)
    log(f"      {result.steps} steps, final loss {result.final_loss:.3f}; figure {result.figure}")

    results_dir = out / "propagation"
    shutil.rmtree(results_dir, ignore_errors=True)
    log(f"[3/4] label propagation on {data / FORMAT_DIRS['davis']} -> {results_dir}")
    summary, per_object = {}, {}
    for name, scores in score_sources(result.checkpoint, data / FORMAT_DIRS["davis"], results_dir, log).items():
        per_object[name] = scores.pop("per_object")
        summary[name] = scores
        log(f"      {name}: J&F {100 * scores['J&F-Mean']:.1f}")
    margins = {name: paired_margin(per_object["trained"], per_object[name]) for name in SOURCES[1:]}

    strip = save_strip(out / "strip.png", data / FORMAT_DIRS["davis"],
                       {name: results_dir / name for name in summary}, summary)
    loss = save_loss_curve(out / "loss.png", run_dir / "metrics.jsonl")
    seconds = time.perf_counter() - start
    write_json_atomic(out / "summary.json", {**summary, "margins": margins, "seed": seed, "seconds": round(seconds, 1)})
    log(f"[4/4] DAVIS-style scores (x100) on the synthetic set, {seconds:.0f} s in all:")
    log(format_table(summary, margins))
    log(f"summary: {out / 'summary.json'}; pictures: {strip}, {loss}")
    return summary
