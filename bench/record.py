"""The project's GPU record: one command on any CUDA machine, one JSON, the README's GPU table.

    python bench/record.py --out OUT --write README.md      # on a CUDA machine
    python bench/record.py --out OUT --dry-run               # tiny shapes on the CPU (a suite test)
    python bench/record.py --render OUT/record.json --write README.md   # the table again, from a record

In order, each part guarded (a failure is recorded with its traceback and the next part runs),
OUT/record.json rewritten atomically after each:
1. suite: `pytest -m cuda tests`, the suite's CUDA cases (every kernel, every dtype), pass/fail;
2. kernels: each fused kernel against its PyTorch reference and torch.compile of it, at the
   shapes of bench/shapes.py, in the dtype training uses (forward + backward where it trains);
3. attention: each SDPA backend, xformers where it imports, and smae's `auto`;
4. train_step: one SiamMAE step (bench/bench_train_step.py's step): pairs/s and MFU;
5. propagate: `smae synth` then `smae propagate` end to end, frames per second.
One timer (`triton.testing.do_bench`, median; the dry run's CPU stand-in: the median of a few
calls) and one correctness rule (bench/cuda_measure.py's `assert_close_to_eager`): every
provider's output (and gradients) is checked against the reference before it is timed.
"""
from __future__ import annotations

import argparse
import datetime
import functools
import importlib.metadata
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ElementTree
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # `python bench/record.py` imports bench.* from the repository root
    sys.path.insert(0, str(REPO))

BEGIN, END = "<!-- device-record:begin -->", "<!-- device-record:end -->"
PARTS = ("suite", "kernels", "attention", "train_step", "propagate")


@dataclass(frozen=True)
class Plan:
    device: str
    dtype: str  # the dtype of the timed kernel and attention inputs
    training: dict[str, dict]  # bench/shapes.py TRAINING_SHAPES or tiny ones
    propagation: dict[str, dict]  # bench/shapes.py PROPAGATION_SHAPES or tiny ones
    attention: dict[str, tuple[int, int, int, int, int]]  # name -> (batch, q tokens, k tokens, heads, head dim)
    train_cases: tuple[tuple[str, str], ...]  # (a `training` key, a bench_train_step.PROVIDERS key)
    compile_backend: str  # torch.compile's backend for the `compile` providers
    synth_args: tuple[str, ...]
    propagate_args: tuple[str, ...]
    propagate_presets: tuple[str, ...] = field(default=("vits16", "vits8"))


def cuda_plan() -> Plan:
    from bench.bench_train_step import CUDA_CASES
    from bench.shapes import PROPAGATION_SHAPES, TRAINING_SHAPES

    return Plan(
        device="cuda", dtype="bfloat16", training=TRAINING_SHAPES, propagation=PROPAGATION_SHAPES,
        # ViT-S encoders at 224 (1 + 196 and 1 + 784 tokens, 6 heads of 64) and the ViT-S/8
        # feature extraction of label propagation at 480x880 (1 + 60 x 110 tokens).
        attention={"vits16-b64": (64, 197, 197, 6, 64), "vits8-b64": (64, 785, 785, 6, 64),
                   "vits8-480x880": (1, 6601, 6601, 6, 64)},
        # bench_train_step's CUDA cases (whole-model compile at ViT-S/16 only) at batch 256
        train_cases=tuple((name, provider) for name, provider in CUDA_CASES if TRAINING_SHAPES[name]["batch"] == 256),
        compile_backend="inductor",
        synth_args=("--preset", "davis-val-size", "--formats", "davis"), propagate_args=())


def dry_plan() -> Plan:
    """Tiny sizes for the CPU, float32 (Triton runs in its interpreter, which gets bf16 dots wrong);
    torch.compile traces with the `eager` backend (no code generation: seconds, not minutes)."""
    tiny = dict(batch=2, img_size=32, patch=8, tokens=16, visible=1, encoder_dim=24, decoder_dim=16, preset="tiny")
    propagation = dict(frames=3, channels=16, classes=3, topk=3, temperature=0.7, radius=3.0, window="circle", global_frames=1)
    return Plan(
        device="cpu", dtype="float32", training={"tiny-b2": tiny}, propagation={"tiny-6x7": dict(grid=(6, 7), **propagation)},
        attention={"tiny": (2, 17, 9, 2, 8)}, train_cases=(("tiny-b2", "eager"), ("tiny-b2", "eager+fused")), compile_backend="eager",
        synth_args=("--preset", "tiny", "--formats", "davis", "--set", "davis.videos=1", "davis.frames=3,3"),
        propagate_args=("--device", "cpu", "--set", "size=64,112"), propagate_presets=("tiny",))


# ---- the one timer and the one correctness rule ----

def seconds_per_call(fn, device: str, rep_ms: int = 1000) -> float:
    """Median seconds of one call of fn: on CUDA do_bench's (CUDA events around each call, L2
    cleared before it, calls for about rep_ms after a 100 ms warm-up); on the CPU of three calls
    after one."""
    if device == "cuda":
        import triton.testing

        return triton.testing.do_bench(fn, warmup=100, rep=rep_ms, return_mode="median") / 1e3
    fn()
    times = []
    for _ in range(3):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[1]


def check_close(got, want) -> None:
    from bench.cuda_measure import assert_close_to_eager

    for g, w in zip(got if isinstance(got, (tuple, list)) else [got], want if isinstance(want, (tuple, list)) else [want]):
        assert_close_to_eager(g.detach().float(), w.detach().float())


# ---- 1. the suite's CUDA cases ----

def suite(out: Path, tests: list[str]) -> dict:
    report = out / "suite.xml"
    command = [sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider", f"--junitxml={report}", *tests]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    root = ElementTree.parse(report).getroot()  # pytest writes it whatever the outcome
    report.unlink()
    counts = {key: sum(int(node.get(key, 0)) for node in root.iter("testsuite")) for key in ("tests", "failures", "errors", "skipped")}
    failed = [f"{case.get('classname')}::{case.get('name')}" for case in root.iter("testcase")
              if case.find("failure") is not None or case.find("error") is not None]
    return {"command": " ".join(["pytest", "-m", "cuda", *tests]), "returncode": result.returncode, "failed": failed,
            "passed": counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"], **counts,
            "output_tail": result.stdout.splitlines()[-5:]}


# ---- 2. kernels against their reference and torch.compile ----

def _kernel_cases(plan: Plan):
    """(case name, reference, fused, inputs, names needing gradients) at the plan's shapes."""
    import torch
    import torch.nn.functional as F

    from smae import kernels as K
    from smae.models.masking import random_masking

    device, dtype = plan.device, getattr(torch, plan.dtype)
    generator = torch.Generator(device).manual_seed(0)

    def randn(*shape, dtype=dtype, grad=False):
        return torch.randn(*shape, device=device, generator=generator).to(dtype).requires_grad_(grad)

    for name, s in plan.training.items():
        batch, length = s["batch"], s["tokens"]
        masking = random_masking(batch, length, 0.95, device, generator)
        yield (f"gather_visible {name}", K.gather_visible_reference, K.gather_visible,
               dict(tokens=randn(batch, length, s["encoder_dim"], grad=True), ids_keep=masking.ids_keep,
                    pos_embed=randn(length, s["encoder_dim"])), ("tokens",))
        yield (f"gather_patches {name}", K.gather_patches_reference, K.gather_patches,
               dict(imgs=randn(batch, 3, s["img_size"], s["img_size"], dtype=torch.float32), ids_keep=masking.ids_keep,
                    patch_size=s["patch"]), ())  # the frames need no gradient
        visible = masking.ids_keep.shape[1]
        yield (f"scatter_visible {name}", K.scatter_visible_reference, K.scatter_visible,
               dict(visible=randn(batch, 1 + visible, s["decoder_dim"], grad=True), ids_restore=masking.ids_restore,
                    mask_token=randn(s["decoder_dim"], dtype=torch.float32, grad=True),
                    pos_embed=randn(1 + length, s["decoder_dim"], dtype=torch.float32), num_prefix=1), ("visible", "mask_token"))
        yield (f"masked_patch_loss {name}", K.masked_patch_loss_reference, K.masked_patch_loss,
               dict(pred=randn(batch, length, 3 * s["patch"] ** 2, grad=True),
                    imgs=randn(batch, 3, s["img_size"], s["img_size"], dtype=torch.float32), mask=masking.mask,
                    patch_size=s["patch"]), ("pred",))
    for name, s in plan.propagation.items():
        n = s["grid"][0] * s["grid"][1]
        args = {key: s[key] for key in ("grid", "topk", "temperature", "radius", "window", "global_frames")}
        yield (f"propagate_labels {name}", K.propagate_labels_reference, K.propagate_labels,
               dict(query=F.normalize(randn(n, s["channels"], dtype=torch.float32), dim=-1),
                    keys=F.normalize(randn(s["frames"], n, s["channels"], dtype=torch.float32), dim=-1),
                    labels=randn(s["frames"], n, s["classes"], dtype=torch.float32).softmax(-1), **args), ())


def _forward_backward(fn, inputs: dict, grad_names: tuple[str, ...], grad_out) -> tuple:
    """(fn's output,) or, when it trains, (output, gradients of the named inputs for grad_out)."""
    import torch

    out = fn(**inputs)
    return (out, *torch.autograd.grad(out, [inputs[n] for n in grad_names], grad_out)) if grad_names else (out,)


def _checked_timings(providers: dict, reference, inputs: dict, grad_names: tuple[str, ...], device: str) -> dict:
    """{"ms": {provider: ms per call}, "errors": {provider: why not timed}}: each provider's output
    and gradients checked against the reference's before it is timed."""
    import torch

    out = reference(**inputs)
    grad_out = torch.randn(out.shape, generator=torch.Generator(device).manual_seed(1), device=device, dtype=out.dtype)
    want = _forward_backward(reference, inputs, grad_names, grad_out)
    result = {"ms": {}, "errors": {}}
    for provider, fn in providers.items():
        run = functools.partial(_forward_backward, fn, inputs, grad_names, grad_out)
        try:
            check_close(run(), want)
            result["ms"][provider] = 1e3 * seconds_per_call(run, device)
        except Exception as error:  # recorded beside the others' times
            result["errors"][provider] = f"{type(error).__name__}: {' '.join(str(error).split())[:300]}"
    return result


def kernels(plan: Plan) -> dict:
    import torch

    from smae.kernels import use_backend

    results = {}
    for name, reference, fused, inputs, grad_names in _kernel_cases(plan):
        def triton(**kwargs):
            with use_backend("triton"):
                return fused(**kwargs)

        providers = {"reference": reference, "compile": torch.compile(reference, backend=plan.compile_backend, dynamic=False),
                     "triton": triton}
        results[name] = {"pass": "forward+backward" if grad_names else "forward",
                         **_checked_timings(providers, reference, inputs, grad_names, plan.device)}
        torch._dynamo.reset()
    return results


# ---- 3. attention backends ----

def attention(plan: Plan) -> dict:
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from smae.kernels import attention as smae_attention, attention_reference, last_attention_backend

    def sdpa_with(backend):
        def run(q, k, v):
            with sdpa_kernel(backend):
                return smae_attention(q, k, v, backend="sdpa")
        return run

    backends = {f"sdpa-{b.name.lower()}": sdpa_with(b) for b in
                (SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.CUDNN_ATTENTION, SDPBackend.MATH)}
    backends["xformers"] = functools.partial(smae_attention, backend="xformers")
    backends["auto"] = smae_attention
    results = {}
    for name, (batch, q_tokens, k_tokens, heads, head_dim) in plan.attention.items():
        generator = torch.Generator(plan.device).manual_seed(0)
        q, k, v = (torch.randn(batch, n, heads, head_dim, device=plan.device, generator=generator).to(getattr(torch, plan.dtype))
                   .requires_grad_() for n in (q_tokens, k_tokens, k_tokens))
        results[name] = {"shape": [batch, q_tokens, k_tokens, heads, head_dim],
                         **_checked_timings(backends, attention_reference, dict(q=q, k=k, v=v), ("q", "k", "v"), plan.device),
                         "auto_runs": last_attention_backend()}  # `auto` is timed last
    return results


# ---- 4. a training step ----

def train_step(plan: Plan) -> dict:
    import torch

    from bench.bench_train_step import PEAK_FLOPS, PROVIDERS, model_and_pairs, pair_loss, step_flops
    from smae.kernels import use_backend

    peak = PEAK_FLOPS.get(torch.cuda.get_device_name()) if plan.device == "cuda" else None
    results = {}
    for name, provider in plan.train_cases:
        shape, (backend, compiled) = plan.training[name], PROVIDERS[provider]
        model, optimizer, (f1, f2) = model_and_pairs(shape, plan.device)
        network = torch.compile(model, backend=plan.compile_backend) if compiled else model
        seeds = iter(range(1, 10**9))

        def step():
            pair_loss(network, f1, f2, next(seeds)).backward()  # a new mask each step, as in training
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        # fallback_random: inductor draws the masks as eager does, so the losses compare
        with torch._inductor.config.patch(fallback_random=True), use_backend(backend):
            with torch.no_grad(), use_backend("torch"):
                want = pair_loss(model, f1, f2, seed=0)
            check_close(pair_loss(network, f1, f2, seed=0), want)
            seconds = seconds_per_call(step, plan.device, rep_ms=5000)  # steps take up to about a second
        flops = step_flops(model.config, shape["batch"], shape["img_size"])
        results[f"{name} {provider}"] = {"ms": 1e3 * seconds, "pairs_per_s": shape["batch"] / seconds,
                                         "tflops": flops / seconds / 1e12, "mfu": flops / seconds / peak if peak else None}
        torch._dynamo.reset()
    return {"peak_bf16_flops": peak, "steps": results}


# ---- 5. smae propagate end to end ----

def propagate(plan: Plan, work: Path) -> dict:
    smae = [sys.executable, "-m", "smae"]
    synth = subprocess.run([*smae, "synth", "--out", str(work / "synth"), *plan.synth_args], cwd=REPO, capture_output=True, text=True)
    if synth.returncode != 0:
        raise RuntimeError(f"smae synth failed (exit {synth.returncode}): {synth.stderr[-2000:]}")
    frames = sum(entry["frames"] for entry in json.loads((work / "synth" / "synth.json").read_text())["formats"].values())
    results = {"frames": frames, "synth": "smae synth " + " ".join(plan.synth_args), "runs": {}}
    for preset in plan.propagate_presets:
        args = ["propagate", "--task", "davis", "--data", str(work / "synth" / "davis"), "--out", str(work / preset),
                "--preset", preset, *plan.propagate_args]
        start = time.perf_counter()
        run = subprocess.run([*smae, *args], cwd=REPO, capture_output=True, text=True)
        wall = time.perf_counter() - start
        results["runs"][preset] = {"command": "smae " + " ".join(args).replace(str(work), "WORK"), "returncode": run.returncode,
                                   "wall_s": wall, "frames_per_s": frames / wall, "stderr_tail": run.stderr.splitlines()[-3:]}
    return results


# ---- the record and the README table ----

def environment(plan: Plan, argv: list[str]) -> dict:
    import platform

    import torch

    def version(name):
        return importlib.util.find_spec(name) and importlib.metadata.version(name)

    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip() or None
    return {"device": torch.cuda.get_device_name() if plan.device == "cuda" else f"CPU ({platform.processor() or platform.machine()})",
            "torch": torch.__version__, "triton": version("triton"), "cuda": torch.version.cuda, "xformers": version("xformers"),
            "python": platform.python_version(), "commit": commit, "date": datetime.date.today().isoformat(),
            "command": "python bench/record.py " + " ".join(argv)}


def _ratio_row(what: str, ms: dict, ours: str, others: tuple[str, ...]) -> str:
    cells = [f"{ms[p]:.3f}" if p in ms else "-" for p in (ours, *others)]
    best_other = min((ms[p] for p in others if p in ms), default=None)
    ratio = f"{best_other / ms[ours]:.2f}x" if best_other and ours in ms else "-"
    return f"| {what} | " + " | ".join(cells) + f" | {ratio} |"


def _not_timed(cases: dict) -> list[str]:
    """One line per provider that failed its check or could not run, with the first reason."""
    reasons = {}
    for name, case in cases.items():
        for provider, error in case["errors"].items():
            reasons.setdefault(provider, f"{name}: {error[:160]}")
    return [f"- not timed: {provider} ({reason})" for provider, reason in sorted(reasons.items())]


def render(record: dict) -> str:
    """The README's GPU table: markdown, every figure from the record."""
    env, parts = record["environment"], record["parts"]
    lines = [f"Measured by `{env['command']}` on {env['device']}, torch {env['torch']}, Triton {env['triton']}, "
             f"CUDA {env['cuda']}, {env['date']} (commit {str(env['commit'])[:10]}).", ""]
    failed = [name for name in PARTS if "error" in parts.get(name, {})]
    if failed:
        lines += [f"Parts that failed (tracebacks in the record): {', '.join(failed)}.", ""]
    suite_result = parts.get("suite", {}).get("result")
    if suite_result:
        lines += [f"CUDA cases of the suite (`{suite_result['command']}`): {suite_result['passed']} passed, "
                  f"{len(suite_result['failed'])} failed, {suite_result['skipped']} skipped.", ""]
    kernel_result = parts.get("kernels", {}).get("result")
    if kernel_result:
        lines += ["| kernel, shape (pass) | triton ms | reference ms | torch.compile ms | triton's speed-up on the faster |",
                  "|---|---|---|---|---|"]
        lines += [_ratio_row(f"{name} ({case['pass']})", case["ms"], "triton", ("reference", "compile")) for name, case in kernel_result.items()]
        lines += ["", *_not_timed(kernel_result), ""]
    attention_result = parts.get("attention", {}).get("result")
    if attention_result:
        names = sorted({b for case in attention_result.values() for b in case["ms"]})
        lines += ["| attention (B, Nq, Nk, H, Dh), forward+backward ms | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
        lines += [f"| {name} {tuple(case['shape'])} | " + " | ".join(f"{case['ms'][n]:.3f}" if n in case["ms"] else "-" for n in names) + " |"
                  for name, case in attention_result.items()]
        lines += ["", *_not_timed(attention_result), ""]
    train_result = parts.get("train_step", {}).get("result")
    if train_result:
        lines += ["| training step | ms | pairs/s | TFLOP/s | MFU |", "|---|---|---|---|---|"]
        lines += [f"| {name} | {s['ms']:.1f} | {s['pairs_per_s']:.0f} | {s['tflops']:.1f} | "
                  + (f"{s['mfu']:.1%}" if s["mfu"] is not None else "-") + " |" for name, s in train_result["steps"].items()]
        lines.append("")
    propagate_result = parts.get("propagate", {}).get("result")
    if propagate_result:
        lines += [f"`{propagate_result['synth']}` ({propagate_result['frames']} frames), then:", "",
                  "| end to end | s | frames/s |", "|---|---|---|"]
        lines += [f"| `{run['command']}` | {run['wall_s']:.1f} | {run['frames_per_s']:.1f} |" if run["returncode"] == 0
                  else f"| `{run['command']}` | failed (exit {run['returncode']}) | - |" for run in propagate_result["runs"].values()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).rstrip() + "\n"


def readme_parts(readme: Path) -> tuple[str, str]:
    """(text up to the begin marker, text from the end marker); UserError if the markers are not
    there once each, in order."""
    from smae.errors import UserError

    text = readme.read_text(encoding="utf-8") if readme.is_file() else ""
    if text.count(BEGIN) != 1 or text.count(END) != 1 or text.index(BEGIN) > text.index(END):
        raise UserError(f"--write {readme}: needs one {BEGIN} line and one {END} line after it; add them where the table goes")
    head, rest = text.split(BEGIN)
    return head + BEGIN + "\n", END + rest.split(END, 1)[1]


def record(args, argv: list[str]) -> dict:
    from smae.atomic import write_json_atomic

    plan = dry_plan() if args.dry_run else cuda_plan()
    data = {"plan": asdict(plan), "environment": environment(plan, argv), "parts": {}}
    path = args.out / "record.json"
    with tempfile.TemporaryDirectory(prefix="smae-record-") as work:
        calls = {"suite": lambda: suite(args.out, args.tests), "kernels": lambda: kernels(plan),
                 "attention": lambda: attention(plan), "train_step": lambda: train_step(plan),
                 "propagate": lambda: propagate(plan, Path(work))}
        for name in PARTS:
            print(f"record: {name}", flush=True)
            start = time.perf_counter()
            try:
                data["parts"][name] = {"result": calls[name]()}
            except Exception:
                data["parts"][name] = {"error": traceback.format_exc()}
                print(data["parts"][name]["error"], file=sys.stderr, flush=True)
            data["parts"][name]["seconds"] = time.perf_counter() - start
            write_json_atomic(path, data)
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/record.py", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="folder for record.json (made if missing)")
    parser.add_argument("--render", type=Path, metavar="RECORD", help="only render the table of an existing record.json")
    parser.add_argument("--write", type=Path, metavar="README", help="put the table between the README's device-record markers")
    parser.add_argument("--dry-run", action="store_true", help="tiny shapes on the CPU, Triton in its interpreter")
    parser.add_argument("--tests", nargs="+", default=["tests"], help="where the suite's CUDA cases are (default: tests)")
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    if (args.out is None) == (args.render is None):
        parser.error("give --out (make a record) or --render RECORD.json (table only)")
    if args.dry_run:  # before any kernel module loads
        os.environ["TRITON_INTERPRET"] = "1"
    from smae.atomic import write_text_atomic
    from smae.errors import UserError

    try:
        if args.write:
            readme_parts(args.write)  # before a record that may take many minutes
        if args.render:
            if not args.render.is_file():
                raise UserError(f"--render {args.render}: no such file; give a record.json that bench/record.py wrote")
            data = json.loads(args.render.read_text(encoding="utf-8"))
        else:
            args.out.mkdir(parents=True, exist_ok=True)
            data = record(args, argv)
        table = render(data)
        print(table)
        if args.write:
            head, tail = readme_parts(args.write)
            write_text_atomic(args.write, head + table + tail)
    except UserError as error:
        print(f"bench/record.py: {error}", file=sys.stderr)
        return 2
    return 0

if __name__ == "__main__":
    sys.exit(main())
