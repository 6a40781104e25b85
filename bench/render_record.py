"""Renders the README's GPU Performance table from a device record (bench/device_record.py).

    python bench/render_record.py bench/results/<date>-h200-record.json                    # print the table
    python bench/render_record.py bench/results/<date>-h200-record.json --write README.md  # replace it in the README

`--write` replaces what lies between the README's two markers (BEGIN, END below) and nothing
else. Every figure comes from the record; a section that did not run shows its status instead.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(REPO))

from smae.atomic import write_text_atomic  # noqa: E402  (after the path set-up above)

BEGIN = "<!-- device-record:begin -->"
END = "<!-- device-record:end -->"
HEADER = ["| what | ours | compared with | ratio |", "|---|---|---|---|"]


def _section(record: dict, name: str) -> tuple[dict | None, str]:
    section = record["sections"].get(name)
    if section is None:
        return None, "not run"
    if "results" not in section:
        return None, section.get("status", "no results")
    return section["results"], section.get("status", "")


def _cases(record: dict, file_name: str) -> list[dict]:
    results, _ = _section(record, "benchmarks")
    return ((results or {}).get("files", {}).get(file_name) or {}).get("cases") or []


def _by_group(cases: list[dict], provider_key) -> dict[str, dict[str, dict]]:
    groups: dict[str, dict[str, dict]] = defaultdict(dict)
    for case in cases:
        groups[case["group"]][provider_key(case)] = case
    return groups


def _ceiling_rows(record: dict) -> list[str]:
    results, status = _section(record, "ceilings")
    if results is None:
        return [f"| ceilings | {status} | | |"]
    copy, matmul = results["copy"], results["matmul_bf16"]
    return [f"| device-to-device copy, {copy['bytes'] / 2**30:.0f} GiB moved | {copy['GBps']:.0f} GB/s | | |",
            f"| bf16 {matmul['n']}^3 matmul, random data | {matmul['TFLOPs']:.0f} TFLOP/s | | |"]


def _kernel_rows(record: dict) -> list[str]:
    rows = []
    cases = _cases(record, "bench_masking.py") + _cases(record, "bench_loss.py")
    for group, providers in _by_group(cases, lambda c: c["extra_info"].get("provider")).items():
        ours = providers.get("triton")
        if "forward+backward" not in group or ours is None:
            continue
        info = ours["extra_info"]
        bandwidth = f", {info['GBps']:.0f} GB/s ({100 * info['fraction_of_copy_bandwidth']:.0f}% of copy)" if "GBps" in info else ""
        others = ", ".join(f"{p} {c['extra_info']['us_per_call']:.0f} us" for p, c in providers.items() if p != "triton")
        ratios = " / ".join(f"{info[f'speedup_vs_{p}']:.2f}x" for p in ("eager", "compile") if f"speedup_vs_{p}" in info)
        rows.append(f"| `{group}` (triton) | {info['us_per_call']:.0f} us{bandwidth} | {others} | {ratios} faster |")
    return rows


def _propagation_rows(record: dict) -> list[str]:
    rows = []
    for group, providers in _by_group(_cases(record, "bench_propagation.py"), lambda c: (c["params"] or {}).get("provider")).items():
        ours = providers.get("triton") or providers.get("reference")
        if ours is None:
            continue
        name = "triton" if "triton" in providers else "reference"
        others = {p: c for p, c in providers.items() if p != name}
        compared = ", ".join(f"{p} {c['median_s'] * 1e3:.1f} ms, {c['extra_info'].get('peak_extra_mib', 0):.0f} MiB" for p, c in others.items())
        ratio = " / ".join(f"{ours['median_s'] / c['median_s']:.2f}x" for c in others.values())
        rows.append(f"| `{group}` ({name}) | {ours['median_s'] * 1e3:.1f} ms / frame, "
                    f"{ours['extra_info'].get('peak_extra_mib', 0):.0f} MiB | {compared} | {ratio} the time |")
    return rows


def _attention_rows(record: dict) -> list[str]:
    results, status = _section(record, "attention")
    if results is None:
        return [f"| attention | {status} | | |"]
    rows = []
    for name, case in results["cases"].items():
        entry = case.get("forward+backward")
        if not entry or not entry["winner"]:
            continue
        winner, times = entry["winner"], entry["ms"]
        others = ", ".join(f"{b} {ms:.2f}" for b, ms in times.items() if b != winner)
        slowest = max(times.values())
        rows.append(f"| attention fwd+bwd `{name}` q {tuple(case['q_shape'])} {case['dtype']} | {winner} {times[winner]:.2f} ms"
                    f" | {others} ms | {times[winner] / slowest:.2f}x the slowest |")
    return rows


def _train_rows(record: dict) -> list[str]:
    train = next((f for n, f in ((_section(record, "benchmarks")[0] or {}).get("files") or {}).items() if n == "bench_train_step.py"), None)
    utilisation = (train or {}).get("utilisation", {}).get("cases", {})
    shapes: dict[str, dict[str, dict]] = defaultdict(dict)
    for key, case in utilisation.items():
        shape, provider = key.split("/", 1)
        shapes[shape][provider] = case
    rows = []
    for shape, providers in shapes.items():
        base = providers.get("eager")
        for provider, case in providers.items():
            ratio = f"{case['pairs_per_s'] / base['pairs_per_s']:.2f}x eager" if base and provider != "eager" else ""
            rows.append(f"| training step `{shape}` bf16, {provider} | {case['pairs_per_s']:.0f} pairs/s, "
                        f"MFU {100 * case['mfu_datasheet']:.1f}% | | {ratio} |")
    return rows


def _e2e_rows(record: dict) -> list[str]:
    results, status = _section(record, "end_to_end")
    if results is None:
        return [f"| `smae propagate` end to end | {status} | | |"]
    rows = []
    frames = results["synth"]["frames"]
    for preset, run in results["propagate"].items():
        if "wall_s" not in run:
            rows.append(f"| `smae propagate --preset {preset}` | {run.get('not_run') or 'failed: see the record'} | | |")
            continue
        split = ", ".join(f"{stage} {100 * s / run['wall_s']:.0f}%" for stage, s in run["split_s"].items())
        memory = f", peak {run['peak_gpu_bytes'] / 2**30:.1f} GiB" if run.get("peak_gpu_bytes") else ""
        rows.append(f"| `smae propagate --preset {preset}`, random weights, {frames} synthetic DAVIS frames | "
                    f"{run['wall_s']:.0f} s, {run['frames_per_s']:.1f} frames/s{memory} | {split} | |")
    return rows


def _correctness_line(record: dict) -> str:
    results, status = _section(record, "correctness")
    if results is None:
        return f"Correctness on the device: {status}."
    kernels = list(results["kernels"].values()) + list(results["propagation"].values())
    passed = sum(check["ok"] for check in kernels)
    parity = results.get("model_parity", {})
    return (f"Correctness on the device (flash-attention's rule: at most 2x PyTorch's own error in the same precision "
            f"against float64): {passed} of {len(kernels)} kernel checks pass; model parity of a `{parity.get('preset')}` step "
            f"kernels on vs off: {'pass' if parity.get('ok') else 'FAIL'}"
            + (f"; not run: {len(results['not_run'])}" if results["not_run"] else "") + ".")


def render(record: dict, source: str) -> str:
    environment, _ = _section(record, "environment")
    environment = environment or {}
    clocks = environment.get("clocks_before", {})
    lines = [f"Recorded by `{record['command']}` ({record['mode']}, {record['started'][:10]}) on "
             f"{environment.get('gpu', 'no GPU')}, driver {clocks.get('driver_version', '?')}, torch {environment.get('torch')}, "
             f"Triton {environment.get('triton')}, xformers {environment.get('xformers')}; record `{source}`, "
             f"re-rendered by `python bench/render_record.py {source} --write README.md`.", ""]
    lines += HEADER
    for rows in (_ceiling_rows, _kernel_rows, _propagation_rows, _attention_rows, _train_rows, _e2e_rows):
        lines += rows(record)
    lines += ["", _correctness_line(record)]
    return "\n".join(lines)


def replace_between_markers(text: str, block: str, where: str) -> str:
    if text.count(BEGIN) != 1 or text.count(END) != 1 or text.index(BEGIN) > text.index(END):
        raise ValueError(f"{where}: needs exactly one {BEGIN} ... {END} pair around the table; add them")
    head, rest = text.split(BEGIN)
    _, tail = rest.split(END)
    return f"{head}{BEGIN}\n{block}\n{END}{tail}"


def install_attention_rows(attention_file: Path, table_path: Path) -> int:
    """Merges the measured rows of a record's attention.json into the attention `auto` table at
    `table_path` (other devices' rows stay); returns how many rows it brought."""
    from smae.kernels.attention_table import load_table, save_table

    rows = json.loads(attention_file.read_text())["table"]
    save_table({**load_table(table_path), **rows}, table_path)
    return sum(len(device_rows) for device_rows in rows.values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/render_record.py", description=__doc__.splitlines()[0])
    parser.add_argument("record", type=Path, help="a record.json written by bench/device_record.py")
    parser.add_argument("--write", type=Path, help="a README whose marked block gets the table")
    parser.add_argument("--attention", type=Path,
                        help="an attention.json of the same record: its measured rows become kernels/attention_table.json")
    args = parser.parse_args(argv)
    if args.attention is not None:
        from smae.kernels.attention_table import TABLE_PATH

        try:
            count = install_attention_rows(args.attention, TABLE_PATH)
        except (OSError, json.JSONDecodeError, KeyError) as error:
            print(f"{args.attention}: no measured attention table ({error!r}); pass the attention.json of the record", file=sys.stderr)
            return 2
        print(f"{TABLE_PATH}: {count} measured cases")
    try:
        record = json.loads(args.record.read_text())
    except (OSError, json.JSONDecodeError) as error:
        print(f"{args.record}: not a readable record ({error}); pass the record.json of bench/device_record.py", file=sys.stderr)
        return 2
    block = render(record, args.record.as_posix())
    if args.write is None:
        print(block)
        return 0
    try:
        text = replace_between_markers(args.write.read_text(), block, str(args.write))
    except (OSError, ValueError) as error:
        print(f"bench/render_record.py: {error}", file=sys.stderr)
        return 2
    write_text_atomic(args.write, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
