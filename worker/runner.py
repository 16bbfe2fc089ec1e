"""The model runner (after Triton's Python backend): `load()`, then `run(batch)` -> one outcome per job.

Both hosts of a runner, an embedded gateway and a Celery worker, load it with `load(warmup=...)`,
the one place that marks it ready. A runner holds each model once per process. `run` decodes every
job on its own (a corrupt frame fails only its job), merges the valid brackets of one model in one
`Enhancer.merge` call (which batches equal shapes), and encodes each result in the format its job
asked for (plus, for jobs that keep it, the linear result as half-float OpenEXR, from which any
format can be encoded later). If a merge call raises, its brackets are retried one by one so that
one bad bracket never fails its batch-mates.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Collection, Sequence
from typing import Literal

import numpy as np

from emvnet import registry
from emvnet.errors import UnknownModelError
from emvnet.infer import Enhancer
from emvnet.io import DEFAULT_MAX_PIXELS, encode_image
from emvnet.merge.bracket import Bracket, Reference
from worker import metrics
from worker.jobs import Job, JobFailure, JobOutput, Outcome
from worker.settings import WorkerSettings

log = logging.getLogger(__name__)

WARMUP_SIZE = (64, 96)  # (H, W): big enough to run every code path, small enough to take ms


def check_model(name: str, allowed: Collection[str] | None) -> str:
    """`name` if a job may use it (served here and registered), else UnknownModelError; loads nothing."""
    if allowed is not None and name not in allowed:
        known = ", ".join(sorted(allowed))
        raise UnknownModelError(f"model {name!r} is not served here; available: {known}")
    if name != registry.AUTO:  # "auto" resolves when loaded (a trained network, else a classical merge)
        registry.get(name)
    return name


class ModelRunner:
    """Loads models on first use (the default one in `load()`) and merges batches of jobs."""

    def __init__(
        self,
        default_model: str = "auto",
        *,
        allowed: Sequence[str] | None = None,
        device: str = "cpu",
        max_pixels: int = DEFAULT_MAX_PIXELS,
        jpeg_quality: int = 95,
        exr_precision: Literal["half", "float"] = "half",
    ) -> None:
        self.default_model = default_model
        self.allowed = frozenset(allowed) if allowed is not None else None
        self.device = device
        self.max_pixels = max_pixels
        self.jpeg_quality = jpeg_quality
        self.exr_precision = exr_precision
        self._models: dict[str, Enhancer] = {}
        self._lock = threading.Lock()
        self.ready = False

    @classmethod
    def from_settings(cls, settings: WorkerSettings) -> ModelRunner:
        """The runner a worker (or the embedded gateway) configures from its settings."""
        return cls(
            settings.model,
            allowed=settings.models,
            device=settings.device,
            max_pixels=settings.max_pixels,
            jpeg_quality=settings.jpeg_quality,
            exr_precision=settings.exr_precision,
        )

    def enhancer(self, name: str) -> Enhancer:
        """The loaded model `name`, loading it on first use."""
        with self._lock:
            if name not in self._models:
                check_model(name, self.allowed)
                t0 = time.perf_counter()
                self._models[name] = Enhancer.from_pretrained(name, self.device, max_pixels=self.max_pixels)
                log.info("loaded model %s on %s in %.2f s", name, self.device, time.perf_counter() - t0)
            return self._models[name]

    def load(self, *, warmup: bool = True) -> None:
        """Load the default model and (with `warmup`) warm it up; then `ready` turns true and the
        `emvnet_model_ready` gauge 1. Without warmup the first request pays the lazy setup."""
        self.enhancer(self.default_model)
        if warmup:
            self.warmup()
        self.ready = True
        metrics.MODEL_READY.set(1)

    def warmup(self) -> None:
        """One synthetic merge and encode per loaded model, so the first request pays no lazy setup."""
        h, w = WARMUP_SIZE
        ramp = np.linspace(0, 255, w, dtype=np.float32)[None, :, None]
        scene = np.broadcast_to(ramp, (h, w, 3))
        frames = [np.clip(scene * s, 0, 255).astype(np.uint8) for s in (0.25, 1.0, 4.0)]
        for name, enhancer in list(self._models.items()):
            t0 = time.perf_counter()
            bracket = enhancer.prepare(frames, [0.25, 1.0, 4.0], "auto")
            (hdr,) = enhancer.merge([bracket])
            encode_image(hdr, "png")
            log.info("warmed up %s in %.3f s", name, time.perf_counter() - t0)

    def run(self, batch: Sequence[Job]) -> list[Outcome]:
        """One outcome per job, in order."""
        outcomes: list[Outcome | None] = [None] * len(batch)
        groups: dict[str, list[tuple[int, Bracket]]] = defaultdict(list)
        t0 = time.perf_counter()
        for i, job in enumerate(batch):
            try:
                enhancer = self.enhancer(job.spec.model)
                reference: Reference = "auto" if job.spec.reference is None else job.spec.reference
                bracket = enhancer.prepare(list(job.frames), job.spec.exposures, reference)
                groups[job.spec.model].append((i, bracket))
            except Exception as exc:
                outcomes[i] = self._failure(job, exc)
        for model, items in groups.items():
            enhancer = self._models[model]
            try:
                hdrs = enhancer.merge([b for _, b in items])
            except Exception:
                log.warning("a batch of %d failed to merge; retrying its jobs one by one", len(items))
                hdrs = [self._merge_one(enhancer, b) for _, b in items]  # type: ignore[misc]
            for (i, bracket), hdr in zip(items, hdrs, strict=True):
                if isinstance(hdr, Exception):
                    outcomes[i] = self._failure(batch[i], hdr)
                    continue
                outcomes[i] = self._encode(batch[i], bracket, hdr, enhancer.name)  # the resolved model
        elapsed = time.perf_counter() - t0
        for model in {job.spec.model for job in batch}:
            metrics.INFERENCE.labels(model).observe(elapsed)
        assert all(o is not None for o in outcomes), "every job needs an outcome"
        return [self._with_time(o, elapsed) for o in outcomes if o is not None]

    @staticmethod
    def _with_time(outcome: Outcome, elapsed: float) -> Outcome:
        """Each output reports its batch's time: that is what the job waited for."""
        if isinstance(outcome, JobOutput):
            return dataclasses.replace(outcome, inference_seconds=elapsed)
        return outcome

    @staticmethod
    def _merge_one(enhancer: Enhancer, bracket: Bracket) -> np.ndarray | Exception:
        try:
            return enhancer.merge([bracket])[0]
        except Exception as exc:
            return exc

    def _encode(self, job: Job, bracket: Bracket, hdr: np.ndarray, model: str) -> Outcome:
        try:
            image = encode_image(
                hdr, job.spec.output_format, exr_precision=self.exr_precision, jpeg_quality=self.jpeg_quality
            )
            linear = b""
            if job.spec.keep_linear:  # any other format can be encoded from it later, on demand
                exr_half = job.spec.output_format == "exr" and self.exr_precision == "half"
                linear = image if exr_half else encode_image(hdr, "exr", exr_precision="half")
        except Exception as exc:
            return self._failure(job, exc)
        metrics.IMAGES.labels(model).inc()
        metrics.PIXELS.labels(model).inc(hdr.shape[0] * hdr.shape[1])
        return JobOutput(
            image=image,
            output_format=job.spec.output_format,
            width=int(hdr.shape[1]),
            height=int(hdr.shape[0]),
            reference=bracket.reference,
            blind=bracket.blind,
            model=model,
            inference_seconds=0.0,
            linear=linear,
        )

    @staticmethod
    def _failure(job: Job, exc: Exception) -> JobFailure:
        failure = JobFailure.from_exception(exc)
        if failure.code == "internal":
            log.error("job %s failed: %r", job.spec.job_id, exc, exc_info=exc)
        return failure
