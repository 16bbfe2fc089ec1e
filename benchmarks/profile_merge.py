"""Where the time of one network merge goes: the engine's stages and the top operators.

    python benchmarks/profile_merge.py                                  # emvnet-fast-rgb, 1 MP, CPU
    python benchmarks/profile_merge.py --device cuda --size 12mp --tile 1024 2048 4096
    python benchmarks/profile_merge.py --feature-passes 1024x1024 680x880   # CPU passes, then exit

Per tile size: the median wall time of the input stage (`NetworkMerger._inputs`: stacking, the
reference-first order, gains) and of the tiled forward (`NetworkMerger.run`), then a
torch.profiler table of one merge (self CPU time; self CUDA time on a GPU). Random weights: speed
does not depend on them.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from speed import SIZES, _bracket  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="emvnet-fast-rgb")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", default="1mp", choices=list(SIZES))
    parser.add_argument(
        "--tile", type=int, nargs="*", default=[0], help="tile sides to compare (0: the model's)"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rows", type=int, default=15, help="operators listed")
    parser.add_argument(
        "--feature-passes",
        nargs="+",
        metavar="HxW",
        help="only time the feature extractor on 3 frames of these tile sizes, in one pass and in "
        "passes of rrdb.CPU_PASS_PIXELS (the CPU default), alternating; median of --repeats x 2",
    )
    args = parser.parse_args()
    if args.feature_passes:
        return feature_passes(args.model, args.feature_passes, 2 * args.repeats)

    import torch
    from torch.profiler import ProfilerActivity, profile

    from emvnet.net.engine import NetworkMerger

    layout = "rgb" if args.model.endswith("-rgb") else "rggb"
    bracket = _bracket(*SIZES[args.size], layout, blind=False)
    _ = bracket.linear  # input decoding is not merging
    cuda = args.device.startswith("cuda")
    for tile in args.tile:
        merger = NetworkMerger.random(args.model, device=args.device, prealign="off", tile=tile or None)
        merger.merge([_bracket(*SIZES["0.25mp"], layout, blind=False)])  # warm-up
        stages: dict[str, list[float]] = {"inputs": [], "forward": [], "merge": []}
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            inputs = merger._inputs([bracket])
            t1 = time.perf_counter()
            merger.run(*inputs)
            if cuda:
                torch.cuda.synchronize()
            t2 = time.perf_counter()
            merger.merge([bracket])
            t3 = time.perf_counter()
            stages["inputs"].append(t1 - t0)
            stages["forward"].append(t2 - t1)
            stages["merge"].append(t3 - t2)
        med = {k: statistics.median(v) for k, v in stages.items()}
        label = str(merger.tile)
        if merger._cuda_passes:  # no tile given on CUDA: the engine measured one
            label = f"auto = {next(iter(merger._cuda_passes.values()))[0]}"
        print(
            f"{args.model} {args.size} on {args.device}, tile {label}: merge {med['merge']:.3f} s "
            f"(inputs {med['inputs']:.3f} s, tiled forward {med['forward']:.3f} s), median of {args.repeats}",
            flush=True,
        )
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        merger.merge([bracket])
    key = "self_cuda_time_total" if cuda else "self_cpu_time_total"
    print(prof.key_averages().table(sort_by=key, row_limit=args.rows))
    if cuda:
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))
    return 0


def feature_passes(model_name: str, sizes: list[str], repeats: int) -> int:
    """Seconds of the feature extractor (bf16 autocast where the CPU has it) on 3 frames at once
    against the same frames in passes of `CPU_PASS_PIXELS`, alternating, in this process."""
    import torch

    from emvnet.net.engine import autocast, resolve_precision, to_channels_last
    from emvnet.net.layers import rrdb
    from emvnet.net.model import build_model

    model = build_model(model_name, seed=0)
    to_channels_last(model)
    features, cpu = model.features, torch.device("cpu")
    default = rrdb.CPU_PASS_PIXELS
    for size in sizes:
        h, w = (int(v) for v in size.split("x"))
        cin = features.entry[0].in_channels // model.config.features.unshuffle**2  # frames and masks
        x = torch.rand(3, cin, h, w).contiguous(memory_format=torch.channels_last)
        times: dict[str, list[float]] = {"one pass": [], "passes": []}
        with torch.inference_mode(), autocast(cpu, resolve_precision("auto", cpu)):
            features(x)  # warm-up
            for _ in range(repeats):
                for label, pixels in (("one pass", 1 << 62), ("passes", default)):
                    rrdb.CPU_PASS_PIXELS = pixels
                    t0 = time.perf_counter()
                    features(x)
                    times[label].append(time.perf_counter() - t0)
        rrdb.CPU_PASS_PIXELS = default
        one, passes = (statistics.median(v) for v in times.values())
        print(
            f"features, 3 frames of {size}: one pass {one:.3f} s, passes {passes:.3f} s ({one / passes:.2f}x)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
