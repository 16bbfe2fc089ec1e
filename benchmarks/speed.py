"""Speed benchmark of the EMVNet variants and the OpenCV baselines.

Reports, for 3-frame brackets at 1 MP (1000x1000) and 12 MP (4000x3000; raw variants get packed
Bayer of the same sensor size): median seconds per megapixel over repeated runs, the peak resident
memory of the process that ran the case, and the batch-size scaling of emvnet-fast-rgb. Each case
runs in its own spawned process so its peak RSS is its own. Networks use random weights (speed does
not depend on them) and the engine's defaults (bf16 + channels_last on CPUs with native bf16).

Also measured (`--accuracy`): max relative error of bf16 against float32 on the real bracket in
tests/fixtures, per variant, with the shipped weights where installed, else with the output heads
randomized (an untrained head returns the prior).

    python benchmarks/speed.py                     # everything at the default sizes
    python benchmarks/speed.py --variants emvnet-fast-rgb --sizes 1mp 12mp --repeats 5
    python benchmarks/speed.py --device cuda --variants emvnet-fast-rgb emvnet-paper-rgb --batches 1 4 16

On CUDA the networks run there (bf16 autocast by default) and the memory column is the GPU's peak
allocation; the OpenCV baselines stay on the CPU.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SIZES = {"0.25mp": (500, 500), "1mp": (1000, 1000), "12mp": (3000, 4000)}  # (H, W) sensor pixels
NETWORKS = [
    "emvnet-fast-rgb",
    "emvnet-fast-raw",
    "emvnet-fast-isp",
    "emvnet-paper-rgb",
    "emvnet-paper-raw",
    "emvnet-paper-isp",
]
BASELINES = ["debevec", "robertson", "mertens"]
TIMES = (0.25, 1.0, 4.0)


def _bracket(h: int, w: int, layout: str, blind: bool, seed: int = 0):
    import cv2

    from emvnet.frame import Frame
    from emvnet.merge.bracket import make_bracket

    rng = np.random.default_rng(seed)
    if layout == "rggb":
        h, w = h // 2, w // 2
    small = rng.random((h // 16 + 2, w // 16 + 2, 3)).astype(np.float32) * 2
    rad = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    rad += rng.random((h, w, 3)).astype(np.float32) * 0.2
    if layout == "rggb":
        rad = np.concatenate([rad, rad[..., 1:2]], 2)[..., [0, 1, 3, 2]]
        frames = [
            Frame(np.clip(rad * t, 0, 1).astype(np.float32), "linear", "rggb", "dng", 12) for t in TIMES
        ]
    else:
        frames = [
            Frame(np.power(np.clip(rad * t, 0, 1), 1 / 2.2).astype(np.float32), "display", "rgb", "png", 8)
            for t in TIMES
        ]
    return make_bracket(frames, None if blind else TIMES, reference=1)


def _merger(name: str, prealign: str, device: str):
    from emvnet import registry
    from emvnet.net.engine import NetworkMerger

    if name.startswith("emvnet-"):
        return NetworkMerger.random(name, device=device, prealign=prealign)  # type: ignore[arg-type]
    return registry.get(name).build("cpu")


def _case(
    name: str, size: str, batch: int, repeats: int, blind: bool, prealign: str, device: str, queue: mp.Queue
) -> None:
    """Runs in a child process: warm up on 0.25 MP, then time `repeats` merges; report median and
    peak memory (the process's RSS; on CUDA the GPU's peak allocation)."""
    import torch

    torch.set_num_threads(torch.get_num_threads())
    merger = _merger(name, prealign, device)
    layout = "rgb" if name in BASELINES or name.endswith("-rgb") else "rggb"
    merger.merge([_bracket(*SIZES["0.25mp"], layout, blind)])  # warm-up (oneDNN kernels, allocator)
    brackets = [_bracket(*SIZES[size], layout, blind, seed=k) for k in range(batch)]
    _ = [b.linear for b in brackets]  # linearization is input decoding, not merging
    gpu = device.startswith("cuda") and name.startswith("emvnet-")
    if gpu:
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        merger.merge(brackets)  # returns host arrays: the GPU's work is done when it returns
        times.append(time.perf_counter() - t0)
    if gpu:
        peak_gb = torch.cuda.max_memory_allocated() / 1024**3
    else:
        peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    queue.put((statistics.median(times), min(times), peak_gb))


def run_case(
    name: str,
    size: str,
    batch: int = 1,
    repeats: int = 3,
    blind: bool = False,
    prealign: str = "off",
    device: str = "cpu",
):
    ctx = mp.get_context("spawn")
    queue: mp.Queue = ctx.Queue()
    proc = ctx.Process(target=_case, args=(name, size, batch, repeats, blind, prealign, device, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def accuracy(names: list[str]) -> None:
    """Max relative error of bf16 vs float32 on the real fixture bracket (320x480)."""
    import cv2
    import torch

    from emvnet.frame import Frame
    from emvnet.merge.bracket import make_bracket
    from emvnet.net import checkpoint
    from emvnet.net.engine import NetworkMerger

    lins = []
    for stem in ("IMG_2600", "IMG_2601", "IMG_2602"):
        bgr = cv2.imread(str(ROOT / "tests/fixtures/brackets/frobisher" / f"{stem}.jpg"))
        lins.append(bgr[..., ::-1].astype(np.float32) / 255)
    print(
        "\nbf16 vs float32 on tests/fixtures/brackets/frobisher (320x480, times 1/8, 1, 8 s): shipped weights"
        " where installed, else random weights with output heads of std 0.05"
    )
    print(f"{'variant':20s} {'max rel':>8s} {'p99.9':>8s} {'mean':>9s}")
    for name in names:
        if name.endswith("-rgb"):
            frames = [Frame(np.ascontiguousarray(x), "display", "rgb", "jpeg", 8) for x in lins]
        else:  # mosaic the linearized photo into packed RGGB (half size)
            packed = [np.power(x, 2.2) for x in lins]
            packed = [
                np.stack([p[0::2, 0::2, 0], p[0::2, 1::2, 1], p[1::2, 0::2, 1], p[1::2, 1::2, 2]], 2)
                for p in packed
            ]
            frames = [Frame(np.ascontiguousarray(p), "linear", "rggb", "dng", 8) for p in packed]
        bracket = make_bracket(frames, [1 / 8, 1, 8])
        outs = []
        trained = checkpoint.installed(name)
        for precision in ("fp32", "bf16"):
            if trained:  # the shipped weights
                merger = NetworkMerger(checkpoint.load_installed(name), precision=precision, prealign="off")  # type: ignore[arg-type]
            else:
                merger = NetworkMerger.random(name, precision=precision, prealign="off")  # type: ignore[arg-type]
                gen = torch.Generator().manual_seed(1)
                for dec in merger.model.decoders:
                    with torch.no_grad():
                        dec.out.weight.copy_(torch.randn(dec.out.weight.shape, generator=gen) * 0.05)
            outs.append(merger.merge([bracket])[0])
        rel = np.abs(outs[1] - outs[0]) / np.maximum(np.abs(outs[0]), 1e-2)
        weights = "shipped" if trained else "random heads"
        print(
            f"{name:20s} {rel.max():8.4f} {np.quantile(rel, 0.999):8.4f} {rel.mean():9.6f}  ({weights})",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="*", default=NETWORKS + BASELINES)
    parser.add_argument("--sizes", nargs="*", default=["1mp", "12mp"], choices=list(SIZES))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--paper-12mp", action="store_true", help="also run the paper variants at 12 MP (slow)"
    )
    parser.add_argument("--no-accuracy", action="store_true")
    parser.add_argument("--batches", nargs="*", type=int, default=[1, 2, 4])
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N] for the networks")
    args = parser.parse_args()

    import torch

    bf16 = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    cpu = torch.backends.cpu.get_cpu_capability()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU {cpu}, native bf16: {bf16}")
    if args.device.startswith("cuda"):
        print(f"networks on {torch.cuda.get_device_name(args.device)} (peak memory column: GPU allocation)")
    print(
        f"3-frame brackets, known exposure times unless noted; median (and min) of {args.repeats} runs "
        "after a warm-up; min shows the cost when other processes share the cores\n"
    )
    head = f"{'s/merge':>8s} {'s/MP':>7s} {'min s/MP':>9s} {'peak RSS GB':>12s}"
    print(f"{'model':20s} {'size':>6s} {'mode':>14s} {head}")
    for name in args.variants:
        for size in args.sizes:
            paper = name.startswith("emvnet-paper")
            if paper and size == "12mp" and not args.paper_12mp:
                print(f"{name:20s} {size:>6s} {'':>14s} {'skipped (--paper-12mp)':>30s}")
                continue
            repeats = 1 if paper else args.repeats
            modes = [("known", False, "off")]
            if name == "emvnet-fast-rgb":
                modes += [("blind", True, "off"), ("known+prealign", False, "auto")]
            for label, blind, prealign in modes:
                seconds, fastest, rss = run_case(name, size, 1, repeats, blind, prealign, args.device)
                mpx = SIZES[size][0] * SIZES[size][1] / 1e6
                cols = f"{seconds:8.2f} {seconds / mpx:7.3f} {fastest / mpx:9.3f} {rss:12.2f}"
                print(f"{name:20s} {size:>6s} {label:>14s} {cols}", flush=True)
    if "emvnet-fast-rgb" in args.variants and args.batches:
        print("\nbatch scaling, emvnet-fast-rgb, 1 MP brackets in one merge call (engine chunks to ~1 MP)")
        print(f"{'batch':>5s} {'s/batch':>8s} {'s/MP':>7s} {'min s/MP':>9s} {'peak RSS GB':>12s}")
        for batch in args.batches:
            seconds, fastest, rss = run_case(
                "emvnet-fast-rgb", "1mp", batch, args.repeats, device=args.device
            )
            print(
                f"{batch:5d} {seconds:8.2f} {seconds / batch:7.3f} {fastest / batch:9.3f} {rss:12.2f}",
                flush=True,
            )
    if not args.no_accuracy:
        accuracy([n for n in args.variants if n.startswith("emvnet-")])


if __name__ == "__main__":
    main()
