"""End-to-end merge time on real brackets from disk: what a user of `Enhancer.enhance` and of
`emvnet enhance` waits for, stage by stage, beside the OpenCV baselines in the same run.

    python benchmarks/e2e.py                                   # 1, 2, 12 MP, known and blind, CPU
    python benchmarks/e2e.py --sizes 2 --repeats 3 --scenes motion_carport
    python benchmarks/e2e.py --sizes 2 12 --device cuda --out OUT   # the GPU run (gpu_e2e.sh)

Frames: the real 8-bit JPEG brackets of ../shared/data/brackets (frobisher: 3 frames, EXIF times
1/8, 1, 8 s; motion_carport: 3 handheld frames, 0, +3, +6 EV), else the repository's fixture copy
of frobisher; each resized to the asked megapixels into a temporary folder as 8-bit JPEG without
EXIF. Known: the times are passed (`exposures=`, `--exposures`); blind: they are omitted.

Each case (model x scene x size x mode) runs in a fresh process: load the model, warm up on the
bracket at 0.25 MP, then `--repeats` timed merges, each split into stages:
  decode    reading the JPEGs (`emvnet.infer.as_frame`)
  reading   the response and the exposure ratios (`Enhancer.prepare`), the linearization and
            the clip masks (`NetworkMerger.stages["linearize"]`)
  prealign  the global homographies (`emvnet.merge.align`)
  prior     the classical merge under the network's residual (`EMVNet._prior`)
  network   the tiled forward without its prior
  merge     the rest of the merge: the baselines' whole OpenCV merge; for the networks, stacking
            the inputs in reference-first order and the exposure gains
  encode    writing the result as half-float EXR Columns: medians of
the repeats, s/MP end to end, its ratio to debevec's of the same case, peak RSS of the process
(GPU: its peak allocation besides), then one `emvnet enhance` command of the same case (process
start-up and model load included) and, for the networks, the forward alone on the prepared
inputs ("network only", the figure benchmarks/speed.py gives on a synthetic bracket).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import queue as queue_module
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DATA = ROOT.parent / "shared" / "data" / "brackets"
FIXTURE = ROOT / "tests" / "fixtures" / "brackets" / "frobisher"
FROBISHER_TIMES = (1 / 8, 1.0, 8.0)  # the EXIF times of IMG_2600..2602
STAGES = ("decode", "reading", "prealign", "prior", "network", "merge", "encode")


def scenes(names: list[str]) -> dict[str, tuple[list[Path], tuple[float, ...]]]:
    """Scene -> (frame files, exposure times in seconds) for the scenes on disk."""
    found: dict[str, tuple[list[Path], tuple[float, ...]]] = {}
    for name in names:
        folder = DATA / name
        if name == "frobisher":
            files = sorted(folder.glob("IMG_*.jpg")) or sorted(FIXTURE.glob("IMG_*.jpg"))
            if files:
                found[name] = (files, FROBISHER_TIMES)
        elif (folder / "exposures.txt").exists():
            stops = [float(v) for v in (folder / "exposures.txt").read_text().split()]
            found[name] = (sorted(folder.glob("frame_*.jpg")), tuple(2.0**s / 64 for s in stops))
    return found


def resized(files: list[Path], megapixels: float, out: Path) -> list[str]:
    """The frames resized to `megapixels` (aspect kept) as 8-bit JPEGs without EXIF in `out`."""
    import cv2

    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for f in files:
        img = cv2.imread(str(f), cv2.IMREAD_COLOR)
        h, w = img.shape[:2]
        scale = (megapixels * 1e6 / (h * w)) ** 0.5
        size = (round(w * scale), round(h * scale))
        inter = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
        path = out / f"{f.stem}.jpg"
        cv2.imwrite(str(path), cv2.resize(img, size, interpolation=inter), [cv2.IMWRITE_JPEG_QUALITY, 95])
        paths.append(str(path))
    return paths


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def cli_seconds(model: str, paths: list[str], times: tuple[float, ...] | None, device: str) -> float:
    """Wall time of one `emvnet enhance` command (start-up, model load, reading, merge, writing)."""
    out = Path(paths[0]).parent / f"cli-{model}.exr"
    cmd = [sys.executable, "-m", "emvnet.cli", "-q", "enhance", *paths, "-o", str(out), "--model", model]
    cmd += ["--device", device] + (["--exposures", *[repr(t) for t in times]] if times else [])
    search = [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(search)}
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, cwd=ROOT)
    return time.perf_counter() - t0


def _case(args: dict[str, Any], queue: mp.Queue) -> None:
    """In a child process: the case's figures, or its error, on the queue."""
    try:
        queue.put(_measure(args))
    except Exception:
        import traceback

        queue.put({"error": traceback.format_exc()})


def _measure(args: dict[str, Any]) -> dict[str, Any]:
    """Warm up, time the repeats stage by stage, then the CLI and the forward alone."""
    import torch

    from emvnet.infer import Enhancer, as_frame
    from emvnet.io import write_image
    from emvnet.net.engine import NetworkMerger

    cuda = args["device"].startswith("cuda")
    enh = Enhancer.from_pretrained(args["model"], device=args["device"])
    merger = enh.merger
    network = isinstance(merger, NetworkMerger)
    prior_s = [0.0]
    if network:
        model = merger.model
        prior = model._prior

        def timed_prior(*a: Any, **kw: Any) -> Any:
            if cuda:
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            out = prior(*a, **kw)
            if cuda:
                torch.cuda.synchronize()
            prior_s[0] += time.perf_counter() - t0
            return out

        model._prior = timed_prior  # type: ignore[method-assign]
    times = args["times"]
    enh.enhance(args["warmup"], times)  # oneDNN / cuDNN kernels, allocator
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    out_path = Path(args["paths"][0]).parent / f"api-{args['model']}.exr"
    rows = []
    for _ in range(args["repeats"]):
        prior_s[0] = 0.0
        t0 = time.perf_counter()
        frames = [as_frame(p) for p in args["paths"]]
        t1 = time.perf_counter()
        hdr = enh.enhance(frames, times)
        t2 = time.perf_counter()
        write_image(out_path, hdr)
        t3 = time.perf_counter()
        st = merger.stages if network else {}
        lin, pre, net = st.get("linearize", 0.0), st.get("prealign", 0.0), st.get("network", 0.0)
        rows.append(
            {
                "decode": t1 - t0,
                "reading": enh.last_timing.prepare_s + lin,
                "prealign": pre,
                "prior": prior_s[0],
                "network": net - prior_s[0],
                "merge": enh.last_timing.merge_s - lin - pre - net,  # the baselines' whole merge
                "encode": t3 - t2,
                "total": t3 - t0,
            }
        )
    result: dict[str, Any] = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    result["megapixels"] = enh.last_timing.megapixels
    result["rss_gb"] = _peak_rss_gb()
    result["gpu_gb"] = torch.cuda.max_memory_allocated() / 1024**3 if cuda else None
    result["network_only"] = None
    if network:
        bracket = enh.prepare(frames, times)
        inputs = merger._inputs([bracket])
        t0 = time.perf_counter()
        merger.run(*inputs)
        result["network_only"] = time.perf_counter() - t0
    result["cli"] = cli_seconds(args["model"], args["paths"], times, args["device"]) if args["cli"] else None
    return result


def run_case(**args: Any) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    queue: mp.Queue = ctx.Queue()
    proc = ctx.Process(target=_case, args=(args, queue))
    proc.start()
    while True:
        try:
            result: dict[str, Any] = queue.get(timeout=5)
            break
        except queue_module.Empty:
            if not proc.is_alive():
                result = {"error": f"the case's process died (exit code {proc.exitcode})"}
                break
    proc.join()
    if "error" in result:
        raise RuntimeError(f"case {args['model']} {args['paths'][0]}: {result['error']}")
    return result


def table(results: list[dict[str, Any]]) -> str:
    head = f"| model | scene | MP | mode | {' | '.join(STAGES)} | total s | s/MP | x debevec | RSS GB |"
    head += " CLI s | network only s/MP |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in results:
        base = next(
            (b for b in results if b["model"] == "debevec" and b["case"] == r["case"]),
            None,
        )
        ratio = f"{r['total'] / base['total']:.2f}" if base else "-"
        stages = " | ".join(f"{r[k]:.2f}" for k in STAGES)
        rss = f"{r['rss_gb']:.2f}" + (f" (GPU {r['gpu_gb']:.2f})" if r.get("gpu_gb") else "")
        cli = f"{r['cli']:.2f}" if r["cli"] is not None else "-"
        net = f"{r['network_only'] / r['megapixels']:.3f}" if r["network_only"] is not None else "-"
        lines.append(
            f"| {r['model']} | {r['scene']} | {r['megapixels']:.2f} | {r['mode']} | {stages} | "
            f"{r['total']:.2f} | {r['total'] / r['megapixels']:.3f} | {ratio} | {rss} | {cli} | {net} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="*", default=["emvnet-fast-rgb", "debevec"])
    parser.add_argument("--scenes", nargs="*", default=["frobisher", "motion_carport"])
    parser.add_argument("--sizes", nargs="*", type=float, default=[1.0, 2.0, 12.0], help="megapixels")
    parser.add_argument("--modes", nargs="*", default=["known", "blind"], choices=["known", "blind"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-cli", action="store_true", help="skip the `emvnet enhance` command")
    parser.add_argument("--out", type=Path, help="write results.json and e2e.md here")
    args = parser.parse_args()

    import torch
    from tqdm import tqdm

    found = scenes(args.scenes)
    if not found:
        print(f"no brackets under {DATA} or {FIXTURE}", file=sys.stderr)
        return 1
    missing = sorted(set(args.scenes) - set(found))
    if missing:
        print(f"skipped (not on disk): {', '.join(missing)}", file=sys.stderr)
    cases = [
        (s, mpx, mode, m) for s in found for mpx in args.sizes for mode in args.modes for m in args.models
    ]
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU "
        f"{torch.backends.cpu.get_cpu_capability()}, device {args.device}; medians of {args.repeats}",
        flush=True,
    )
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for scene, mpx, mode, model in tqdm(cases, desc="e2e", unit="case"):
            files, times = found[scene]
            folder = Path(tmp) / f"{scene}-{mpx:g}"
            paths = (
                resized(files, mpx, folder) if not folder.exists() else sorted(map(str, folder.glob("*.jpg")))
            )
            warmup = resized(files, 0.25, Path(tmp) / f"{scene}-warmup")  # kernels and allocator
            r = run_case(
                model=model,
                paths=paths,
                warmup=warmup,
                times=times if mode == "known" else None,
                repeats=args.repeats,
                device=args.device,
                cli=not args.no_cli,
            )
            r.update(model=model, scene=scene, mode=mode, case=(scene, mpx, mode))
            results.append(r)
            tqdm.write(table([r]).splitlines()[-1])
    text = table(results)
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "e2e.md").write_text(" ".join(sys.argv) + "\n\n" + text + "\n")
        (args.out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
