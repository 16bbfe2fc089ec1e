"""Distillation of a fast EMVNet from a larger teacher (Sec. 5.4.3).

The paper fine-tunes the fast network "by knowledge-distillation in a step-to-step way" with the
original EMVNet as the teacher. Here the student trains with the task objective of Eq. 4 plus an
L1 between its outputs and the teacher's, both mu-law tonemapped with the ground truth's peak
(display-referred for E2E-ISP: `LossConfig.mu` = None), over Y'', Y', Y paired from the last
hourglass back. "Step-to-step" is read as a staged schedule (`DistillConfig.stages`): first the
student only imitates the teacher (its outputs are a denoised, easier target than the ground
truth), then the task losses join, then they lead with a small imitation term.

The teacher: `teacher_weights` (a checkpoint stem, e.g. trained on a GPU with
configs/emvnet-teacher-rgb.toml), or `teacher_config`, trained first into OUT/teacher with the
same resume guarantees, so one `emvnet train` command rebuilds the whole chain from scratch. The
paper-size network costs ~7 TMAC/MP and cannot train in the CPU budget, so the CPU teacher is a
mid-size variant (see that config). Intermediate features are not distilled: the student's
features run at a quarter of the teacher's resolution and half its width, so matching them needs
an adapter and a hook on `EMVNet.features`; the output term alone is what Sec. 5.4.3 describes.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import Tensor

from emvnet.device import torch_device
from emvnet.net import checkpoint
from emvnet.net.model import EMVNet
from emvnet.training.config import (
    ConfigError,
    DistillConfig,
    DistillStage,
    TrainConfig,
    load_config,
    with_overrides,
)
from emvnet.training.losses.content import mu_tonemap, target_peak
from emvnet.training.trainer import Inputs, Objective, config_path, train

log = logging.getLogger(__name__)


def stage_at(stages: tuple[DistillStage, ...], step: int, steps: int) -> DistillStage:
    """The stage that step `step` of `steps` falls in."""
    progress = step / max(steps, 1)
    for stage in stages:
        if progress < stage.until:
            return stage
    return stages[-1]


def mu_l1(a: Tensor, b: Tensor, peak: Tensor, mu: float | None) -> Tensor:
    """L1 between two linear images in the mu-law domain of the ground truth's peak."""
    return (mu_tonemap(a, peak, mu) - mu_tonemap(b, peak, mu)).abs().mean()


class Distillation:
    """The trainer's `Objective`: task terms reweighted by the stage, plus the imitation term."""

    def __init__(self, teacher: EMVNet, config: DistillConfig, steps: int, mu: float | None) -> None:
        self.teacher = teacher.eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.config, self.steps, self.mu = config, steps, mu

    def __call__(
        self,
        step: int,
        inputs: Inputs,
        outputs: list[Tensor],
        target: Tensor,
        mask: Tensor,
        terms: dict[str, Tensor],
    ) -> dict[str, Tensor]:
        stage = stage_at(self.config.stages, step, self.steps)
        with torch.no_grad():
            taught = inputs.through(self.teacher, all_outputs=True)
        peak = target_peak(target)
        pairs = list(zip(outputs[::-1], taught[::-1], strict=False))  # Y with Y, Y' with Y', ...
        distill = torch.stack([mu_l1(s, t.float() * mask, peak, self.mu) for s, t in pairs]).mean()
        out = dict(terms)
        out["distill"] = distill
        out["total"] = stage.task_weight * terms["total"] + stage.distill_weight * distill
        return out


def teacher_stem(
    cfg: TrainConfig, out: Path, resume: bool, device: str | None, workers: int | None
) -> Path | None:
    """The teacher's checkpoint stem, training it first when only its config is given (None: interrupted)."""
    assert cfg.distill is not None, "teacher_stem needs a [distill] section"
    d = cfg.distill
    if d.teacher_weights:
        stem = config_path(d.teacher_weights, cfg)
        if not checkpoint.installed(stem.name, stem.parent):
            raise ConfigError(f"teacher weights {stem}.safetensors / .json not found")
        return stem
    teacher_cfg = with_overrides(load_config(config_path(d.teacher_config, cfg)), device, workers)
    if teacher_cfg.distill is not None:
        raise ConfigError(f"{d.teacher_config}: a teacher config must not itself distill")
    teacher_out = out / "teacher"
    stem = teacher_out / "export" / teacher_cfg.model.name
    if checkpoint.installed(stem.name, stem.parent):
        log.info("teacher already trained: %s", stem)
        return stem
    log.info("training the teacher %s into %s", teacher_cfg.model.name, teacher_out)
    has_checkpoints = any((teacher_out / "checkpoints").glob("step-*.state"))
    result = train(teacher_cfg, teacher_out, resume=resume or has_checkpoints)
    return None if result.interrupted else result.export


def distillation_objective(
    cfg: TrainConfig,
    out: Path,
    resume: bool = False,
    device: str | None = None,
    workers: int | None = None,
    steps: int | None = None,
) -> Objective | None:
    """The Distillation objective for `cfg` (training the teacher first if needed); None if interrupted."""
    assert cfg.distill is not None, "distillation_objective needs a [distill] section"
    stem = teacher_stem(cfg, out, resume, device, workers)
    if stem is None:
        return None
    dev = torch_device(device or cfg.run.device)
    teacher = checkpoint.load(stem, dev)
    if teacher.config.task != cfg.model.task:
        tasks = f"{teacher.config.task} vs {cfg.model.task}"
        raise ConfigError(f"teacher {teacher.config.name} is not for the student's task ({tasks})")
    return Distillation(teacher, cfg.distill, steps or cfg.run.steps, cfg.loss.mu)
