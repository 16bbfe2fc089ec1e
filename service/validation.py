"""Everything checked before a job is queued, for both transports.

Frame count, formats by magic bytes, pixel limits and equal sizes come from the headers alone
(`emvnet.io.probe_image`: no pixel decoding in the gateway); exposure times and the reference from
the request; the model from the served list. Each failure is the typed error of the table in
`service/errors.py`, with the frame it concerns named in the message.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from emvnet.errors import BracketError, EmvnetError, ExposureError, UnsupportedFormatError
from emvnet.io import ImageInfo, probe_image, sniff_format
from service.settings import Settings
from worker.jobs import Job, JobSpec, OutputFormat
from worker.runner import check_model


@dataclass(frozen=True)
class EnhanceParams:
    """A merge request as either transport received it, before validation."""

    frames: Sequence[bytes]
    exposures: Sequence[float] | None = None
    reference: int | None = None
    model: str | None = None
    output_format: OutputFormat = "png"
    request_id: str = ""
    ignore_exif: bool = False  # merge blind unless exposures are stated (the frames' EXIF is not read)
    keep_linear: bool = False  # asynchronous: the result may be fetched later in another format


def parse_exposures(text: str | None) -> list[float] | None:
    """'1/250, 0.01, 1/15' -> seconds; empty -> None (EXIF or blind)."""
    if text is None or not text.strip():
        return None
    values = []
    for i, item in enumerate(text.split(","), start=1):
        # float() on each side, never Fraction(): Fraction('1e999999') builds a huge integer (a slow
        # request, then OverflowError, a 500); float gives inf, which check_exposures refuses.
        num, slash, den = item.strip().partition("/")
        try:
            value = float(num) / float(den) if slash else float(num)
        except (ValueError, ZeroDivisionError):
            raise ExposureError(
                f"exposure {i} ({item.strip()!r}) is not a number of seconds (e.g. 0.01 or 1/100)"
            ) from None
        values.append(value)
    return values


def parse_reference(text: str | None) -> int | None:
    """'auto' or '' -> None, else a 0-based frame index."""
    if text is None or text.strip().lower() in ("", "auto"):
        return None
    try:
        return int(text)
    except ValueError:
        raise BracketError(f"reference must be 'auto' or a 0-based frame index, got {text!r}") from None


def check_exposures(exposures: Sequence[float], n_frames: int) -> tuple[float, ...]:
    if len(exposures) != n_frames:
        raise ExposureError(f"got {len(exposures)} exposure times for {n_frames} frames; give one per frame")
    for i, t in enumerate(exposures, start=1):
        if not math.isfinite(t) or t <= 0:
            raise ExposureError(f"exposure time {i} is {t!r}; exposure times must be positive seconds")
    return tuple(float(t) for t in exposures)


def probe_frames(frames: Sequence[bytes], settings: Settings) -> list[ImageInfo]:
    """Headers of every frame; the first failure names its frame (1-based)."""
    infos = []
    for i, data in enumerate(frames, start=1):
        if sniff_format(data[:64]) is None:
            kind = "empty" if not data else "not an image in a supported format"
            raise UnsupportedFormatError(
                f"frame {i} is {kind}; send JPEG, PNG, TIFF, DNG/raw, OpenEXR or Radiance"
            )
        try:
            infos.append(probe_image(data, max_pixels=settings.max_pixels))
        except EmvnetError as exc:
            raise type(exc)(f"frame {i}: {exc.message}") from None
    first = infos[0]
    for i, info in enumerate(infos[1:], start=2):
        if (info.width, info.height) != (first.width, first.height):
            raise BracketError(
                f"frame {i} is {info.width}x{info.height} but frame 1 is {first.width}x{first.height}; "
                "all frames must have one size"
            )
    return infos


def validate(params: EnhanceParams, settings: Settings, *, deadline_s: float) -> Job:
    """A job ready to queue, or the typed error of the first problem found."""
    n = len(params.frames)
    if n < settings.min_frames:
        raise BracketError(f"a bracket needs at least {settings.min_frames} frames, got {n}")
    if n > settings.max_frames:
        raise BracketError(f"got {n} frames; at most {settings.max_frames} are allowed per merge")
    exposures = check_exposures(params.exposures, n) if params.exposures else None
    if params.reference is not None and not 0 <= params.reference < n:
        raise BracketError(f"reference {params.reference} is out of range for {n} frames (0-based)")
    model = check_model(params.model or settings.model, settings.models)
    infos = probe_frames(params.frames, settings)
    now = time.time()
    spec = JobSpec(
        job_id=uuid.uuid4().hex,
        model=model,
        frame_count=n,
        width=infos[0].width,
        height=infos[0].height,
        output_format=params.output_format,
        exposures=exposures,
        ignore_exif=params.ignore_exif,
        reference=params.reference,
        request_id=params.request_id,
        submitted_at=now,
        deadline=now + deadline_s,
        keep_linear=params.keep_linear,
    )
    return Job(spec, tuple(params.frames))
