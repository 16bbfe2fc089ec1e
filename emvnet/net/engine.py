"""Inference engine for EMVNet: precision, tiling, batching, and the registry's `Merger`.

- Precision: on CPU, channels_last weights and bf16 autocast where the CPU has native bf16
  (AVX512-BF16 / AMX; about 3x faster on a Zen 4 core, see `benchmarks/speed.py`); on CUDA, bf16
  autocast where supported, else fp16. The softmax over candidates, the flow, the prior and the
  output stay float32, so bf16 only touches convolutions.
- Tiling: frames larger than the variant's tile are cut into overlapping tiles; each tile runs on
  every bracket of the batch at once, and its output is blended into the canvas with a raised-cosine
  ramp across each overlap (weights of neighbours sum to 1, so seams vanish). Memory is bounded by
  the tile size. The network has no global statistics, and the exposure ratios are computed per
  bracket before tiling, so every tile sees the same normalization. On CUDA, unless a tile is
  given, the tile grows with the GPU's free memory (`cuda_pass`): a pass at the variant's tile is
  measured once per input shape and the largest tile whose pass fits CUDA_MEMORY_SHARE of the
  free memory is used, up to CUDA_MAX_TILE. On an H200 a 12 MP merge of emvnet-fast-rgb took
  0.39 s in one 4096 px pass against 1.02 s in 1024 px tiles (`benchmarks/profile_merge.py`).
- Batching: brackets of one shape, frame count and layout run in one forward pass (B = brackets),
  in chunks of at most `max_pass_pixels` (batch x tile area). On CPU the budget is ~1 MP: a
  2-bracket forward pass of 1 MP each measured 1.4 s/MP against 0.66 s/MP one at a time, because
  the activations no longer fit the caches; on CUDA it is 16 MP. Blind and known brackets in one
  call share the blind candidate set; the prior uses each bracket's own (known or estimated) ratios.
- Pre-alignment (`emvnet.merge.align`): "auto" applies a homography only where one is found and moves the
  frame by at least 2 px.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from emvnet.device import torch_device
from emvnet.errors import BracketError
from emvnet.merge import align
from emvnet.merge.bracket import Bracket
from emvnet.merge.classical import merge_weighted
from emvnet.merge.isp_prior import camera_wb, display_params
from emvnet.merge.merger import ModelSpec
from emvnet.net import checkpoint
from emvnet.net.config import VARIANTS, ModelConfig
from emvnet.net.matching_volume import reference_first
from emvnet.net.model import EMVNet, build_model

log = logging.getLogger(__name__)

Precision = Literal["auto", "fp32", "bf16", "fp16"]
Prealign = Literal["auto", "off"]
CUDA_MAX_PASS_PIXELS = 16 << 20  # batch x tile area of one pass on CUDA, at most
CUDA_MAX_TILE = 4096  # a 12 MP frame in one pass
# Where the last `NetworkMerger.merge` spent its time, in seconds (read by benchmarks/e2e.py):
# the brackets' linearization and clip masks, the global pre-alignment, and the tiled forward.
STAGES = ("linearize", "prealign", "network")
CUDA_MEMORY_SHARE = 0.5  # of the GPU's free memory, for one pass (the rest: other models, fragmentation)
# The most frames the shipped networks see in training (configs/*.toml, data.frame_counts).
NETWORK_FRAMES = 4
# Widest exposure ratio between the reference and another frame of the network's subset: the
# simulator's largest neighbour step.
SUBSET_MAX_RATIO = 16.0


def cuda_pass(
    tile: int, unit: int, bytes_per_pixel: float, free_bytes: int, max_pixels: int = CUDA_MAX_PASS_PIXELS
) -> tuple[int, int]:
    """(tile side, pass pixels) for a CUDA device with `free_bytes` free, given the memory one pixel
    of a pass took at the variant's `tile`: never below that tile, a multiple of `unit`."""
    pixels = int(min(max_pixels, CUDA_MEMORY_SHARE * free_bytes / max(bytes_per_pixel, 1.0)))
    side = min(CUDA_MAX_TILE, unit * (math.isqrt(max(pixels, 0)) // unit))
    side = max(tile, side)
    return side, max(pixels, side * side)


def resolve_precision(precision: Precision, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for `precision` on `device`; None = float32."""
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        return torch.float16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    # Without native bf16 (AVX512-BF16 or AMX) the CPU emulates it and gains little over float32.
    native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    return torch.bfloat16 if native else None


def autocast(device: torch.device, dtype: torch.dtype | None) -> AbstractContextManager[object]:
    """Autocast to `dtype` on `device` (`resolve_precision`'s answer); None = float32, no autocast."""
    return nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


def to_channels_last(model: torch.nn.Module) -> torch.nn.Module:
    """Convolution weights in channels_last (2D) / channels_last_3d layout: oneDNN's fast path."""
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            module.weight.data = module.weight.data.contiguous(memory_format=torch.channels_last)
        elif isinstance(module, torch.nn.Conv3d | torch.nn.ConvTranspose3d):
            module.weight.data = module.weight.data.contiguous(memory_format=torch.channels_last_3d)
    return model


def _starts(size: int, tile: int, overlap: int, unit: int = 1) -> tuple[list[int], int]:
    """Tile origins along one axis and the tile length used (<= tile); the last tile is cut at the end.

    Origins, lengths and overlaps are multiples of `unit`, the network's coarsest stride, so every
    tile samples the same strided grid as the whole image would (a strided network is not shift
    invariant). As few tiles as `tile` allows, shrunk to share the axis evenly so the work spent on
    overlaps stays near overlap / length. The last tile ends with the image, so it sees the same
    border as the whole image does.
    """
    if size <= tile:
        return [0], size
    overlap = unit * math.ceil(overlap / unit)
    tile = max(unit * (tile // unit), overlap + unit)
    count = math.ceil((size - overlap) / (tile - overlap))
    length = unit * math.ceil((size + (count - 1) * overlap) / count / unit)
    step = length - overlap
    return [k * step for k in range(count)], length


def _ramp(length: int, starts: list[int], tile: int, k: int, scale: int) -> np.ndarray:
    """1-D blending weights of tile k (output pixels): raised-cosine up/down across its overlaps."""
    lo, hi = starts[k] * scale, min(starts[k] + tile, length) * scale
    w = np.ones(hi - lo, dtype=np.float32)
    if k > 0:  # overlap with the previous tile: [starts[k], end of previous)
        ov = (starts[k - 1] + tile) * scale - lo
        x = (np.arange(ov, dtype=np.float32) + 0.5) / ov
        w[:ov] = 0.5 - 0.5 * np.cos(np.pi * x)
    if k + 1 < len(starts):  # overlap with the next tile: the mirror image of its up ramp
        ov = hi - starts[k + 1] * scale
        x = (np.arange(ov, dtype=np.float32) + 0.5) / ov
        w[-ov:] *= 0.5 + 0.5 * np.cos(np.pi * x)
    return w


class NetworkMerger:
    """An EMVNet as a registry `Merger`: brackets in, linear HDR in reference units out."""

    def __init__(
        self,
        model: EMVNet,
        device: str = "cpu",
        precision: Precision = "auto",
        tile: int | None = None,
        overlap: int | None = None,
        prealign: Prealign = "auto",
        compile: bool = False,
        max_pass_pixels: int | None = None,
    ) -> None:
        self.device = torch_device(device)
        self.config: ModelConfig = model.config
        self.autocast_dtype = resolve_precision(precision, self.device)
        self.tile = tile or self.config.tile
        self.overlap = self.config.overlap if overlap is None else overlap
        if not 0 <= 2 * self.overlap < self.tile:
            raise ValueError(f"overlap {self.overlap} must be under half the tile {self.tile}")
        self.prealign = prealign
        cuda = self.device.type == "cuda"
        self.max_pass_pixels = max_pass_pixels or (CUDA_MAX_PASS_PIXELS if cuda else 1100_000)
        # (frames, channels, gains shape, display) -> (tile, pass pixels) measured on this GPU
        self._cuda_passes: dict[tuple[object, ...], tuple[int, int]] | None = (
            {} if cuda and tile is None and max_pass_pixels is None else None
        )
        to_channels_last(model.to(self.device).eval())
        self.model = model
        self.stages = dict.fromkeys(STAGES, 0.0)  # seconds of the last merge, by stage (STAGES)
        self._forward: Callable[..., list[torch.Tensor]] = torch.compile(model) if compile else model

    @classmethod
    def random(
        cls,
        name: str | ModelConfig,
        device: str = "cpu",
        seed: int = 0,
        precision: Precision = "auto",
        tile: int | None = None,
        overlap: int | None = None,
        prealign: Prealign = "auto",
        max_pass_pixels: int | None = None,
    ) -> NetworkMerger:
        """Randomly initialized weights: for tests and benchmarks only, never for users."""
        model = build_model(name, seed=seed)
        return cls(model, device, precision, tile, overlap, prealign, max_pass_pixels=max_pass_pixels)

    @classmethod
    def installed(cls, name: str, device: str = "cpu") -> NetworkMerger:
        """The shipped weights of a variant; UnknownModelError when they are not installed."""
        return cls(checkpoint.load_installed(name, torch_device(device)), device)

    @property
    def input_layout(self) -> str:
        return self.config.input_layout

    def _inputs(self, brackets: Sequence[Bracket]) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor | None]:
        lins, sats, ratios = [], [], []
        for br in brackets:
            if br.layout != self.input_layout:
                raise BracketError(f"{self.config.name} merges {self.input_layout} frames, got {br.layout}")
            t0 = time.perf_counter()
            lin, sat, r = br.linear, br.saturated(), np.asarray(br.ratios, dtype=np.float64)
            t1 = time.perf_counter()
            if self.prealign == "auto":
                lin, sat, _ = align.prealign(lin, sat, r, br.reference)
            self.stages["linearize"] += t1 - t0
            self.stages["prealign"] += time.perf_counter() - t1
            lins.append(lin)
            sats.append(sat)
            ratios.append(r)
        shapes = {x.shape for x in lins}
        if len(shapes) != 1:
            raise BracketError(f"brackets merged together must share shape and frame count, got {shapes}")
        ref = torch.tensor([br.reference for br in brackets])
        lin_t = torch.from_numpy(np.stack(lins)).permute(0, 1, 4, 2, 3)  # (B, n, C, H, W)
        sat_t = torch.from_numpy(np.stack(sats)).permute(0, 1, 4, 2, 3).float()  # (B, n, C, H, W)
        ratio_t = torch.from_numpy(np.stack(ratios)).float()  # (B, n)
        lin_t, sat_t = reference_first(lin_t, ref), reference_first(sat_t, ref)
        ratio_t = reference_first(ratio_t, ref)
        gains = self.model.gains(ratio_t, blind=any(br.blind for br in brackets))  # (B, n-1, N_E)
        display = None
        if self.config.task == "isp":  # white balance and white point of each whole bracket
            wb = torch.from_numpy(np.stack([camera_wb(br.frames[br.reference]) for br in brackets]))
            display = display_params(lin_t, sat_t, ratio_t, wb)  # (B, 4)
        return lin_t, sat_t, ratio_t, gains, display

    @torch.inference_mode()
    def run(
        self, lin: Tensor, sat: Tensor, ratios: Tensor, gains: Tensor, display: Tensor | None = None
    ) -> Tensor:
        """Tiled forward: lin, sat (B, n, C, H, W) reference first -> (B, C_out, H s, W s) float32.

        `display` (B, 4): the E2E-ISP prior's parameters for the whole bracket, shared by its tiles."""
        b, h, w = lin.shape[0], lin.shape[-2], lin.shape[-1]
        s = self.config.out_scale
        if h <= self.tile and w <= self.tile:
            return self._tile(lin, sat, ratios, gains, display)
        tile, pass_pixels = self.tile, self.max_pass_pixels
        if self._cuda_passes is not None:
            tile, pass_pixels = self._measured_pass(lin, sat, ratios, gains, display)
            if h <= tile and w <= tile:
                return self._tile(lin, sat, ratios, gains, display, pass_pixels)
        unit = self.config.tile_unit
        ys, th = _starts(h, tile, self.overlap, unit)
        xs, tw = _starts(w, tile, self.overlap, unit)
        out = torch.zeros(b, self.config.out_channels, h * s, w * s)
        total = torch.zeros(h * s, w * s)  # sum of blending weights (1 except where 3 tiles meet)
        for ky, y0 in enumerate(ys):
            for kx, x0 in enumerate(xs):
                y1, x1 = min(y0 + th, h), min(x0 + tw, w)
                part = self._tile(
                    lin[..., y0:y1, x0:x1], sat[..., y0:y1, x0:x1], ratios, gains, display, pass_pixels
                )
                weight = torch.from_numpy(np.outer(_ramp(h, ys, th, ky, s), _ramp(w, xs, tw, kx, s)))
                out[..., y0 * s : y1 * s, x0 * s : x1 * s] += part * weight  # (B, C_out, h_t s, w_t s)
                total[y0 * s : y1 * s, x0 * s : x1 * s] += weight
        return out / total

    def _measured_pass(
        self, lin: Tensor, sat: Tensor, ratios: Tensor, gains: Tensor, display: Tensor | None
    ) -> tuple[int, int]:
        """CUDA: (tile, pass pixels) from the memory of one pass of one bracket at the variant's tile."""
        assert self._cuda_passes is not None
        key = (lin.shape[1], lin.shape[2], tuple(gains.shape[1:]), display is not None)
        if key not in self._cuda_passes:
            t, dev = self.tile, self.device
            probe = (lin[:1, ..., :t, :t], sat[:1, ..., :t, :t], ratios[:1], gains[:1])
            torch.cuda.synchronize(dev)
            base = torch.cuda.memory_allocated(dev)
            torch.cuda.reset_peak_memory_stats(dev)
            self._tile(*probe, None if display is None else display[:1])
            used = torch.cuda.max_memory_allocated(dev) - base
            free, _ = torch.cuda.mem_get_info(dev)
            pixels = probe[0].shape[-2] * probe[0].shape[-1]
            self._cuda_passes[key] = cuda_pass(t, self.config.tile_unit, used / pixels, free)
            log.debug("CUDA pass for %s: %s (%.0f B/px)", key, self._cuda_passes[key], used / pixels)
        return self._cuda_passes[key]

    def _tile(
        self,
        lin: Tensor,
        sat: Tensor,
        ratios: Tensor,
        gains: Tensor,
        display: Tensor | None,
        pass_pixels: int | None = None,
    ) -> Tensor:
        """One tile for every bracket, in chunks of the batch that fit `pass_pixels` (default
        `max_pass_pixels`)."""
        dev = self.device
        chunk = max(1, (pass_pixels or self.max_pass_pixels) // (lin.shape[-2] * lin.shape[-1]))
        outs = []
        for i in range(0, lin.shape[0], chunk):
            part = slice(i, i + chunk)
            with autocast(self.device, self.autocast_dtype):
                y = self._forward(
                    lin[part].to(dev),
                    sat[part].to(dev),
                    ratios[part].to(dev),
                    gains[part].to(dev),
                    display=None if display is None else display[part].to(dev),
                )
            outs.append(y[-1].float().cpu())
        return torch.cat(outs, 0)  # (B, C_out, H s, W s)

    def merge(self, brackets: Sequence[Bracket]) -> list[np.ndarray]:
        """One float32 (H, W, C_out) linear HDR array per bracket, in the reference's units.

        Brackets of more than NETWORK_FRAMES frames (tripod sequences, typically) are beyond
        what the network was trained on: RGB ones get the pre-aligned, deghosted classical merge
        of every frame (`classical.merge_weighted`: the network's own prior, with the noise-aware
        ghost test of long brackets, on the response calibrated from the bracket when the times
        are known), which beats Debevec on the dev set's 16-frame captures; raw ones the
        network's merge of the reference and the darkest and brightest frames within x16 of it
        (`network_subset`).
        """
        self.stages = dict.fromkeys(STAGES, 0.0)
        if not brackets:
            return []
        short = [br for br in brackets if br.n <= NETWORK_FRAMES]
        results: dict[int, np.ndarray] = {}
        if short:
            inputs = self._inputs(short)
            t0 = time.perf_counter()
            out = self.run(*inputs)  # (B, C_out, H s, W s)
            self.stages["network"] += time.perf_counter() - t0
            for br, y in zip(short, out, strict=True):
                results[id(br)] = np.ascontiguousarray(y.permute(1, 2, 0).numpy())  # (H s, W s, C_out)
        for br in brackets:
            if br.n <= NETWORK_FRAMES:
                continue
            if self.config.task == "rgb":
                results[id(br)] = merge_weighted(br, prealign=self.prealign == "auto")
            else:
                sub = br.subset(network_subset(br))
                results[id(br)] = np.ascontiguousarray(
                    self.run(*self._inputs([sub]))[0].permute(1, 2, 0).numpy()
                )
        return [results[id(br)] for br in brackets]


def network_subset(bracket: Bracket) -> list[int]:
    """Indices the network merges from a long bracket: the reference and, on each side, the
    frame farthest from it in exposure within x16 (else the nearest one), in bracket order."""
    r = np.asarray(bracket.ratios, dtype=np.float64)
    ref = bracket.reference
    chosen = {ref}
    for side in (r < 1.0, r > 1.0):
        idx = [i for i in range(bracket.n) if side[i] and i != ref]
        if not idx:
            continue
        spread = np.abs(np.log(r[idx]))
        within = [i for i, d in zip(idx, spread, strict=True) if d <= np.log(SUBSET_MAX_RATIO) + 1e-6]
        if within:
            chosen.add(max(within, key=lambda i: abs(np.log(r[i]))))
        else:
            chosen.add(min(idx, key=lambda i: abs(np.log(r[i]))))
    if len(chosen) == 1:  # every other frame has the reference's exposure
        chosen.add(next(i for i in range(bracket.n) if i != ref))
    return sorted(chosen)


def _summary(config: ModelConfig) -> str:
    task = {"rgb": "RGB HDR", "raw": "raw HDR (packed RGGB)", "isp": "E2E-ISP (raw in, RGB out)"}[config.task]
    size = "paper size (slow on CPU)" if config.name.startswith("emvnet-paper") else "fast (Sec. 5.4.3)"
    f = config.features
    return f"EMVNet {task}, {size}: {f.n_rrdb} RRDB x {f.filters}, N_M={config.volume.n_motions}"


def _spec(name: str) -> ModelSpec:
    config = VARIANTS[name]()
    return ModelSpec(
        name=name,
        summary=_summary(config),
        kind="network",
        input_layout=config.input_layout,
        build=lambda device: NetworkMerger.installed(name, device),
    )


SPECS: tuple[ModelSpec, ...] = tuple(_spec(name) for name in VARIANTS)
