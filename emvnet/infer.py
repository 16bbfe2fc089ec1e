"""`Enhancer`: the one Python entry point shared by the CLI, the workers and the benchmarks.

    from emvnet import Enhancer
    enh = Enhancer.from_pretrained("auto", device="cpu")
    hdr = enh.enhance(["short.jpg", "mid.jpg", "long.jpg"])           # exposures from EXIF, or blind
    hdr = enh.enhance(frames, exposures=[1 / 250, 1 / 60, 1 / 15])      # seconds, win over EXIF
    hdrs = enh.enhance_batch([set_a, set_b])                           # one call, batched per shape

Results are linear float32 (H, W, C) in the reference frame's units (1.0 = its clipping level).
"""

from __future__ import annotations

import logging
import os
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from emvnet import registry
from emvnet.device import resolve_device
from emvnet.errors import BracketError
from emvnet.frame import Frame
from emvnet.io import DEFAULT_MAX_PIXELS, RawMode, read_image
from emvnet.merge.bracket import Bracket, Reference, make_bracket

log = logging.getLogger(__name__)

FrameInput = Frame | np.ndarray | str | os.PathLike[str] | bytes


def as_frame(item: FrameInput, *, max_pixels: int = DEFAULT_MAX_PIXELS, raw_mode: RawMode = "rgb") -> Frame:
    """A Frame from a Frame, a file path, encoded bytes, or an RGB array.

    Arrays: uint8/uint16 are camera-encoded (display) RGB; float arrays are taken as linear RGB.
    """
    if isinstance(item, Frame):
        return item
    if isinstance(item, np.ndarray):
        return frame_from_array(item)
    return read_image(item, max_pixels=max_pixels, raw_mode=raw_mode)


def frame_from_array(array: np.ndarray) -> Frame:
    """Wrap an (H, W, 3) RGB array: integer = display-encoded, float = linear."""
    if array.ndim != 3 or array.shape[2] != 3:
        raise BracketError(f"array frames must be (H, W, 3) RGB, got shape {array.shape}")
    if array.dtype == np.uint8:
        return Frame(array.astype(np.float32) / 255.0, "display", "rgb", "array", 8)
    if array.dtype == np.uint16:
        return Frame(array.astype(np.float32) / 65535.0, "display", "rgb", "array", 16)
    if np.issubdtype(array.dtype, np.floating):
        data = np.ascontiguousarray(array, dtype=np.float32)
        return Frame(data, "linear", "rgb", "array", 32, floating=True)
    raise BracketError(f"array frames must be uint8, uint16 or float, got {array.dtype}")


@dataclass
class MergeTiming:
    """Where the time of the last call went, in seconds (read by the CLI and benchmarks)."""

    prepare_s: float = 0.0
    merge_s: float = 0.0
    megapixels: float = 0.0


class Enhancer:
    """A loaded model plus the rules that turn user frames into validated brackets."""

    def __init__(
        self,
        spec: registry.ModelSpec,
        merger: registry.Merger,
        device: str,
        *,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        max_frames: int | None = None,
        crf_gamma: float | None = None,
    ) -> None:
        self.spec = spec
        self.merger = merger
        self.device = device
        self.max_pixels = max_pixels
        self.max_frames = max_frames
        self.crf_gamma = crf_gamma
        self.last_timing = MergeTiming()

    @classmethod
    def from_pretrained(
        cls,
        name: str = "auto",
        device: str = "cpu",
        *,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        max_frames: int | None = None,
        crf_gamma: float | None = None,
    ) -> Enhancer:
        """Load a registered model (`emvnet.registry.names()`) on `device`."""
        resolved = resolve_device(device)
        spec, merger = registry.load(name, resolved)
        return cls(spec, merger, resolved, max_pixels=max_pixels, max_frames=max_frames, crf_gamma=crf_gamma)

    @property
    def name(self) -> str:
        return self.spec.name

    def prepare(
        self,
        frames: Sequence[FrameInput],
        exposures: Sequence[float] | None = None,
        reference: Reference = "auto",
        *,
        ignore_exif: bool = False,
    ) -> Bracket:
        """Decode and validate one frame set without merging it (the service validates early).
        With `ignore_exif` the frames' own exposure times are not read: without `exposures` the
        merge is blind, so a user can check a blind merge against the times they have."""
        decoded = [as_frame(f, max_pixels=self.max_pixels, raw_mode=self.spec.raw_mode) for f in frames]
        if ignore_exif:
            decoded = [f.without_exposure_time() for f in decoded]
        bracket = make_bracket(
            decoded, exposures, reference, crf_gamma=self.crf_gamma, max_frames=self.max_frames
        )
        if bracket.layout != self.spec.input_layout:
            raise BracketError(
                f"model {self.name} merges {self.spec.input_layout} frames, got {bracket.layout} frames"
            )
        return bracket

    def merge(self, brackets: Sequence[Bracket]) -> list[np.ndarray]:
        """Merge validated brackets, batching those of one shape and frame count together."""
        groups: dict[tuple[int, tuple[int, int, int]], list[int]] = defaultdict(list)
        for i, b in enumerate(brackets):
            groups[(b.n, b.shape)].append(i)
        out: list[np.ndarray | None] = [None] * len(brackets)
        for indices in groups.values():
            results = self.merger.merge([brackets[i] for i in indices])
            assert len(results) == len(indices), "a merger must return one result per bracket"
            for i, hdr in zip(indices, results, strict=True):
                out[i] = hdr
        return [r for r in out if r is not None]

    def enhance(
        self,
        frames: Sequence[FrameInput],
        exposures: Sequence[float] | None = None,
        reference: Reference = "auto",
        *,
        ignore_exif: bool = False,
    ) -> np.ndarray:
        """Merge one frame set into linear HDR (H, W, C) float32 in reference units."""
        return self.enhance_batch([frames], [exposures], [reference], ignore_exif=ignore_exif)[0]

    def enhance_batch(
        self,
        frame_sets: Sequence[Sequence[FrameInput]],
        exposures: Sequence[Sequence[float] | None] | None = None,
        references: Sequence[Reference] | None = None,
        *,
        ignore_exif: bool = False,
    ) -> list[np.ndarray]:
        """Merge several frame sets; sets of equal shape share one forward pass."""
        exposures = list(exposures) if exposures is not None else [None] * len(frame_sets)
        references = list(references) if references is not None else ["auto"] * len(frame_sets)
        if not len(exposures) == len(references) == len(frame_sets):
            raise BracketError("give one exposure list and one reference per frame set")
        t0 = time.perf_counter()
        brackets = [
            self.prepare(f, e, r, ignore_exif=ignore_exif)
            for f, e, r in zip(frame_sets, exposures, references, strict=True)
        ]
        t1 = time.perf_counter()
        results = self.merge(brackets)
        t2 = time.perf_counter()
        mp = sum(b.frames[b.reference].megapixels for b in brackets)
        self.last_timing = MergeTiming(prepare_s=t1 - t0, merge_s=t2 - t1, megapixels=mp)
        return results
