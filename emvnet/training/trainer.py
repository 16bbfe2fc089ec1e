"""The EMVNet trainer (Sec. 4.1-4.4) with resume and export; its typed TOML configuration is
`emvnet.training.config`, and `emvnet train` (`emvnet.training.command`) runs it.

The trainer composes what other modules define: the network (`model.EMVNet`), the objective
L_G = L_p + lambda L_a + eta L_c + alpha L_s (`losses.GeneratorLoss`, Eq. 4, the paper's per-task
weights from `LossConfig.for_task`), the discriminator's optimizer (built from
`loss.adversarial.discriminator`), Adam at 1e-4 halved every `optim.halve_every` steps (the paper:
every 200K iterations at batch 8; the CPU configs scale this down and say so), and the simulator's
brackets (`data.SyntheticBrackets` over `default_scenes`). The caller chooses the objective and
hands it in as an `Objective` that rewrites the loss terms (distillation is one, `distill.py`);
nothing here is subclassed.

Determinism: batch `s` is a function of (seed, s) only (one frame count per batch, drawn from the
step; items drawn by index), the ordinal loss's pairs come from a generator seeded by the step, and
a checkpoint holds the model, the EMA, the discriminator, both optimizers and schedulers, the
gradient scaler, every RNG state and the step. So `--resume` continues the uninterrupted
trajectory bit-exactly on CPU (same thread count; CUDA kernels may not be deterministic).

Outputs in `--out DIR`: checkpoints/step-NNNNNNN.state (safetensors + JSON structure, no pickle;
the last two are kept), log.jsonl (one JSON line per step with every loss term, and one per
validation), loss_curves.png, best.{safetensors,json} (the best validation PSNR),
export/<name>.{safetensors,json} (the `emvnet.net.checkpoint` format, ready to copy into
emvnet/weights/). SIGINT/SIGTERM save a checkpoint and stop (exit status 130).
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from types import FrameType
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm import tqdm

from emvnet.device import torch_device
from emvnet.evaluation.metrics import hdr_metrics, psnr
from emvnet.merge.isp_prior import display_params
from emvnet.net import checkpoint
from emvnet.net.engine import autocast, resolve_precision
from emvnet.net.matching_volume import reference_first
from emvnet.net.model import EMVNet
from emvnet.training.config import ConfigError, TrainConfig, fingerprint, same_fingerprint
from emvnet.training.data.datasets import Item, SyntheticBrackets, collate_brackets
from emvnet.training.data.scenes import SceneSource, default_scenes
from emvnet.training.data.simulator import SimulatorConfig
from emvnet.training.losses import GeneratorLoss

log = logging.getLogger(__name__)

KEEP_CHECKPOINTS = 2
EXIT_INTERRUPTED = 130


# ---- data ---------------------------------------------------------------------------------------


class FrameCountBrackets(Dataset[Item]):
    """SyntheticBrackets per frame count, indexed by (n, index): a batch shares one n."""

    def __init__(
        self,
        scenes: SceneSource,
        sim: SimulatorConfig,
        counts: tuple[int, ...],
        seed: int,
        prealign: bool = False,
    ) -> None:
        self.sets = {
            n: SyntheticBrackets(scenes, replace(sim, frames_range=(n, n)), seed, prealign=prealign)
            for n in counts
        }

    def __len__(self) -> int:
        return sum(len(s) for s in self.sets.values())

    def __getitem__(self, key: tuple[int, int]) -> Item:
        n, index = key
        return self.sets[n][index]


class StepBatches(Sampler[list[tuple[int, int]]]):
    """Batch s = one frame count drawn from (seed, s) and items s*B .. s*B + B-1: resumable anywhere."""

    def __init__(self, counts: tuple[int, ...], batch: int, seed: int, start: int, stop: int) -> None:
        self.counts, self.batch, self.seed, self.start, self.stop = counts, batch, seed, start, stop

    def __len__(self) -> int:
        return self.stop - self.start

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for step in range(self.start, self.stop):
            rng = np.random.default_rng([self.seed, step, 1])
            n = self.counts[int(rng.integers(len(self.counts)))]
            yield [(n, step * self.batch + j) for j in range(self.batch)]


def simulator_config(cfg: TrainConfig, size: int) -> SimulatorConfig:
    mode: Literal["rgb", "raw"] = "rgb" if cfg.model.task == "rgb" else "raw"
    return replace(cfg.data.simulator, mode=mode, size=size)


def config_path(path: str, cfg: TrainConfig) -> Path:
    """A path named in a config: absolute, or relative to the config file's folder."""
    p = Path(path).expanduser()
    return p if p.is_absolute() or not cfg.source else Path(cfg.source).parent / p


def scenes_for(cfg: TrainConfig) -> SceneSource:
    root = config_path(cfg.data.data_root, cfg) if cfg.data.data_root else None
    return default_scenes(root, cfg.data.photo_weight)


@dataclass(frozen=True)
class Inputs:
    """What the network takes, reference first, on the training device."""

    lin: Tensor  # (B, n, C, H, W) linear, 1.0 = clipping
    sat: Tensor  # (B, n, C, H, W) float {0, 1}
    ratios: Tensor  # (B, n)
    blind: bool
    display: Tensor | None = None  # (B, 4) E2E-ISP prior parameters (`isp_prior.display_params`)

    def gains(self, model: EMVNet) -> Tensor:
        return model.gains(self.ratios, self.blind)  # (B, n-1, N_E)

    def through(self, model: EMVNet, all_outputs: bool = False) -> list[Tensor]:
        """`model`'s outputs for these inputs ([Y], or [Y'', Y', Y] with `all_outputs`)."""
        gains = self.gains(model)
        return model(self.lin, self.sat, self.ratios, gains, all_outputs=all_outputs, display=self.display)


def prepare(batch: Item, task: str, device: torch.device) -> tuple[Inputs, Tensor, Tensor]:
    """(inputs, target, mask) of a collated batch; the target is "isp" for E2E-ISP, else "hdr"."""
    ref = batch["reference"]
    lin = reference_first(batch["lin"], ref).to(device)  # (B, n, C, H, W)
    sat = reference_first(batch["sat"].float(), ref).to(device)  # (B, n, C, H, W)
    # Known times and blind merges build volumes of different depths (N_E), so a batch is one or
    # the other: the first sample decides, which keeps the simulator's p_blind per batch. In a
    # known-time batch the blind samples' true ratios stand in for the times they were drawn with.
    blind = bool(batch["blind"][0])
    ratios = reference_first(batch["ratios" if blind else "true_ratios"], ref).to(device)  # (B, n)
    target = batch["isp" if task == "isp" else "hdr"].to(device)  # (B, C_out, H s, W s)
    mask = batch["mask"].to(device)  # (B, 1, H, W)
    if mask.shape[-1] != target.shape[-1]:
        mask = torch.nn.functional.interpolate(mask, size=target.shape[-2:], mode="nearest")
    display = display_params(lin, sat, ratios, batch["wb"].to(device)) if task == "isp" else None
    return Inputs(lin, sat, ratios, blind, display), target, mask


# ---- the trainer --------------------------------------------------------------------------------

# Rewrites the task terms (e.g. adds distillation): (step, inputs, outputs, target, mask, terms) -> terms.
Objective = Callable[[int, Inputs, list[Tensor], Tensor, Tensor, dict[str, Tensor]], dict[str, Tensor]]


class Stop:
    """SIGINT/SIGTERM set a flag; the loop saves a checkpoint at the end of the current step."""

    def __init__(self) -> None:
        self.requested = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True

    @contextmanager
    def installed(self) -> Iterator[None]:
        try:
            previous = {s: signal.signal(s, self) for s in (signal.SIGINT, signal.SIGTERM)}
        except ValueError:  # not the main thread: no handlers, no clean stop
            yield
            return
        try:
            yield
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)


@dataclass
class Result:
    step: int
    interrupted: bool
    best_val: float | None
    export: Path | None
    seconds: float


class Trainer:
    def __init__(self, cfg: TrainConfig, out: Path, objective: Objective | None = None) -> None:
        self.cfg, self.out, self.objective = cfg, out, objective
        self.device = torch_device(cfg.run.device)
        self.dtype = resolve_precision(cfg.run.precision, self.device)
        if cfg.run.threads:
            torch.set_num_threads(cfg.run.threads)
        torch.manual_seed(cfg.run.seed)
        random.seed(cfg.run.seed)
        np.random.seed(cfg.run.seed % 2**32)
        self.model = EMVNet(cfg.model).to(self.device).train()
        self.loss = GeneratorLoss(cfg.loss, out_channels=cfg.model.out_channels).to(self.device).train()
        content_only = replace(
            cfg.loss, perceptual=False, adversarial=False, ordinal_mode="off", content_weight=1.0
        )
        self.content_loss = GeneratorLoss(content_only, out_channels=cfg.model.out_channels).to(self.device)
        opt = cfg.optim
        self.opt_g = torch.optim.Adam(self.model.parameters(), lr=opt.lr, betas=opt.betas)
        self.sched_g = torch.optim.lr_scheduler.StepLR(self.opt_g, opt.halve_every, gamma=0.5)
        self.disc = self.loss.adversarial.discriminator if self.loss.adversarial is not None else None
        self.opt_d: torch.optim.Adam | None = None
        self.sched_d: torch.optim.lr_scheduler.StepLR | None = None
        if self.disc is not None:
            self.opt_d = torch.optim.Adam(self.disc.parameters(), lr=opt.d_lr, betas=opt.betas)
            self.sched_d = torch.optim.lr_scheduler.StepLR(self.opt_d, opt.halve_every, gamma=0.5)
        fp16 = self.dtype == torch.float16 and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=fp16)
        self.ema: dict[str, Tensor] | None = None
        if opt.ema_decay > 0:
            self.ema = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self.step = 0
        self.best_val: float | None = None
        self.elapsed = 0.0  # seconds inside training steps, over all sessions
        self.wall_before = 0.0  # wall seconds of earlier sessions (data, validation, checkpoints too)
        self.session_start = time.perf_counter()
        self.ckpt_dir = out / "checkpoints"
        self.log_path = out / "log.jsonl"

    # -- state --

    def state(self) -> dict[str, Any]:
        rng: dict[str, Any] = {
            "torch": torch.get_rng_state(),
            "numpy": np.random.get_state(),
            "python": random.getstate(),
        }
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        return {
            "step": self.step,
            "fingerprint": fingerprint(self.cfg),
            "model": self.model.state_dict(),
            "ema": self.ema,
            "discriminator": self.disc.state_dict() if self.disc is not None else None,
            "opt_g": self.opt_g.state_dict(),
            "sched_g": self.sched_g.state_dict(),
            "opt_d": self.opt_d.state_dict() if self.opt_d is not None else None,
            "sched_d": self.sched_d.state_dict() if self.sched_d is not None else None,
            "scaler": self.scaler.state_dict(),
            "best_val": self.best_val,
            "elapsed": self.elapsed,
            "wall": self.wall(),
            "rng": rng,
        }

    def save_checkpoint(self) -> Path:
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        path = self.ckpt_dir / f"step-{self.step:07d}.state"
        tmp = path.with_suffix(".tmp")
        checkpoint.save_state(self.state(), tmp)
        os.replace(tmp, path)  # a crash mid-write never leaves a truncated checkpoint
        for old in sorted(self.ckpt_dir.glob("step-*.state"))[:-KEEP_CHECKPOINTS]:
            old.unlink()
        return path

    def latest_checkpoint(self) -> Path | None:
        found = sorted(self.ckpt_dir.glob("step-*.state"))
        return found[-1] if found else None

    def resume(self) -> bool:
        path = self.latest_checkpoint()
        if path is None:
            log.info("no checkpoint in %s: starting from step 0", self.ckpt_dir)
            return False
        state = checkpoint.load_state(path, self.device)  # safetensors + JSON: never unpickles
        if not same_fingerprint(state["fingerprint"], fingerprint(self.cfg)):
            raise ConfigError(
                f"{path} was written with a different config (only run.steps, run.device, run.threads "
                "and data.workers may change on --resume); use a new --out"
            )
        self.model.load_state_dict(state["model"])
        self.ema = state["ema"]
        if self.disc is not None:
            self.disc.load_state_dict(state["discriminator"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.sched_g.load_state_dict(state["sched_g"])
        if self.opt_d is not None and self.sched_d is not None:
            self.opt_d.load_state_dict(state["opt_d"])
            self.sched_d.load_state_dict(state["sched_d"])
        self.scaler.load_state_dict(state["scaler"])
        self.step, self.best_val, self.elapsed = state["step"], state["best_val"], state["elapsed"]
        self.wall_before, self.session_start = state["wall"], time.perf_counter()
        rng = state["rng"]
        torch.set_rng_state(rng["torch"].cpu())
        np.random.set_state(rng["numpy"])
        random.setstate(rng["python"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([s.cpu() for s in rng["cuda"]])
        self._truncate_log()
        log.info("resumed from %s at step %d", path, self.step)
        return True

    def _truncate_log(self) -> None:
        """Drop log lines written after the checkpoint: the resumed run writes them again."""
        if not self.log_path.is_file():
            return
        kept = [ln for ln in self.log_path.read_text().splitlines() if json.loads(ln)["step"] <= self.step]
        self.log_path.write_text("".join(ln + "\n" for ln in kept))

    # -- weights --

    def _update_ema(self) -> None:
        if self.ema is None:
            return
        # Short runs: the EMA follows the weights closely at first ((1 + t) / (10 + t) warm-up).
        decay = min(self.cfg.optim.ema_decay, (1 + self.step) / (10 + self.step))
        with torch.no_grad():
            for key, value in self.model.state_dict().items():
                if value.dtype.is_floating_point:
                    self.ema[key].lerp_(value, 1.0 - decay)
                else:
                    self.ema[key].copy_(value)

    def eval_model(self) -> EMVNet:
        """A copy of the network with the weights that are validated and exported (EMA if on)."""
        model = EMVNet(self.cfg.model).to(self.device)
        model.load_state_dict(self.ema if self.ema is not None else self.model.state_dict())
        return model.eval()

    # -- one step --

    def train_step(self, batch: Item) -> dict[str, float]:
        cfg, dev = self.cfg, self.device
        inputs, target, mask = prepare(batch, cfg.model.task, dev)
        gen = torch.Generator(device=dev).manual_seed(cfg.run.seed * 1_000_003 + self.step)
        with autocast(dev, self.dtype):
            outs = inputs.through(self.model, all_outputs=True)
            outs = [y * mask for y in outs]  # pixels the simulator could not render do not count
            target = target * mask
            pretrain = self.step < cfg.optim.content_steps
            terms = (self.content_loss if pretrain else self.loss)(outs, target, generator=gen)
            if self.objective is not None:
                terms = self.objective(self.step, inputs, outs, target, mask, terms)
        self.opt_g.zero_grad(set_to_none=True)
        self.scaler.scale(terms["total"]).backward()
        self.scaler.unscale_(self.opt_g)
        grad_norm = torch.nn.utils.clip_grad_norm_(
            self.model.parameters(), cfg.optim.grad_clip if cfg.optim.grad_clip > 0 else math.inf
        )
        self.scaler.step(self.opt_g)
        row = {k: float(v.detach()) for k, v in terms.items()}
        row["grad_norm"] = float(grad_norm)
        if self.loss.adversarial is not None and self.opt_d is not None and not pretrain:
            with autocast(dev, self.dtype):
                d_loss = self.loss.adversarial.discriminator_loss(outs[-1], target)
            self.opt_d.zero_grad(set_to_none=True)
            self.scaler.scale(d_loss).backward()
            self.scaler.step(self.opt_d)
            row["discriminator"] = float(d_loss.detach())
        self.scaler.update()
        self.sched_g.step()
        if self.sched_d is not None and not pretrain:
            self.sched_d.step()  # the discriminator's schedule starts with its first step
        self.step += 1
        self._update_ema()
        row["lr"] = float(self.sched_g.get_last_lr()[0])
        return row

    # -- validation --

    def validation_items(self) -> list[Item]:
        d = self.cfg.data
        counts = (min(d.frame_counts), max(d.frame_counts))
        sim = replace(simulator_config(self.cfg, d.val_size), frames_range=counts)
        data = SyntheticBrackets(
            scenes_for(self.cfg), sim, seed=d.val_seed, length=d.val_samples, prealign=d.prealign
        )
        return [data[i] for i in range(d.val_samples)]

    @torch.no_grad()
    def validate(self, items: list[Item]) -> dict[str, float]:
        """Mean PSNR-mu (isp: PSNR of the display image) over the fixed validation brackets."""
        model = self.eval_model()
        scores, linear = [], []
        for item in items:
            batch = collate_brackets([item])
            inputs, target, mask = prepare(batch, self.cfg.model.task, self.device)
            with autocast(self.device, self.dtype):
                y = inputs.through(model)[-1]
            pred = (y.float() * mask)[0].permute(1, 2, 0).cpu().numpy()  # (H, W, C)
            gt = (target * mask)[0].permute(1, 2, 0).cpu().numpy()
            if self.cfg.model.task == "isp":
                scores.append(psnr(np.clip(pred, 0, 1), gt))
            else:
                row = hdr_metrics(pred, gt, align="lsq" if inputs.blind else "none")
                scores.append(row["psnr_mu"])
                linear.append(row["psnr_l"])
        out = {"val_psnr": float(np.mean(scores))}
        if linear:
            out["val_psnr_l"] = float(np.mean(linear))
        if self.cfg.data.kalantari_dir:
            out["val_kalantari_psnr"] = self.validate_kalantari(model)
        return out

    def validate_kalantari(self, model: EMVNet) -> float:
        """Mean PSNR-mu of `emvnet eval`'s protocol on the first scenes of `data.kalantari_dir`."""
        from emvnet.evaluation.evaluate import EvalOptions, Method, evaluate_scene
        from emvnet.infer import Enhancer
        from emvnet.merge.merger import ModelSpec
        from emvnet.net.engine import NetworkMerger
        from emvnet.training.data.kalantari import find_scenes

        name = self.cfg.model.name
        merger = NetworkMerger(model, str(self.device), self.cfg.run.precision)
        spec = ModelSpec(name, "in training", "network", "rgb", build=lambda device: merger)
        method = Method(name, name, Enhancer(spec, merger, str(self.device)))
        source = config_path(self.cfg.data.kalantari_dir, self.cfg)
        opts = EvalOptions((name,), sheets=False, progress=False, report_dir=self.out / "val_kalantari")
        scores = []
        with tqdm(disable=True) as bar:
            for scene in find_scenes(source)[: self.cfg.data.kalantari_limit]:
                result = evaluate_scene(scene, [method], opts, bar)["results"][name]
                if result.get("psnr_mu") is not None:
                    scores.append(float(result["psnr_mu"]))
        return float(np.mean(scores)) if scores else float("nan")

    # -- the loop --

    def _log(self, row: dict[str, Any]) -> None:
        with self.log_path.open("a") as fh:
            fh.write(json.dumps(row) + "\n")

    def export(self, which: Literal["best", "last"]) -> Path:
        stem = self.out / "export" / self.cfg.model.name
        best = self.out / "best"
        if which == "best" and checkpoint.installed("best", self.out):
            model = checkpoint.load(best)
        else:
            model = self.eval_model().cpu()
        extra = {
            "trained_steps": self.step,
            "train_seconds": round(self.elapsed, 1),
            "wall_seconds": round(self.wall(), 1),
            "best_val_psnr": self.best_val,
            "seed": self.cfg.run.seed,
            "config": self.cfg.source,
            "exported": which,
        }
        checkpoint.save(model, stem, extra)
        stem.with_suffix(".md").write_text(self.card(which))
        return stem

    def wall(self) -> float:
        return self.wall_before + time.perf_counter() - self.session_start

    def card(self, which: str) -> str:
        """The training paragraph of a model card: what was trained, how long, on what."""
        cfg, dev = self.cfg, self.device
        where = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"CPU, {os.cpu_count()} cores"
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        distill = " (distilled, Sec. 5.4.3)" if cfg.distill is not None else ""
        card = (
            f"## {cfg.model.name}: training{distill}\n\n"
            f"- command: `emvnet train {cfg.source}` (seed {cfg.run.seed}), {self.step} steps of batch "
            f"{cfg.data.batch}, {cfg.data.size} px crops, frame counts {list(cfg.data.frame_counts)}\n"
            f"- device: {where}, {torch.get_num_threads()} threads, autocast {self.dtype or 'off (fp32)'}; "
            f"load average at export {load}\n"
            f"- time: {self.wall() / 3600:.2f} h wall ({self.elapsed / 3600:.2f} h in training steps)\n"
            f"- exported: {which} weights{' (EMA)' if self.ema is not None else ''}, best validation PSNR "
            f"{self.best_val or math.nan:.2f} dB on {cfg.data.val_samples} synthetic brackets "
            f"(seed {cfg.data.val_seed})\n"
        )
        if cfg.distill is not None:
            trained = f"trained by {cfg.distill.teacher_config} into OUT/teacher"
            teacher = cfg.distill.teacher_weights or trained
            card += f"- teacher: {teacher}; add its time (its own export/*.md) to the total\n"
        return card

    def fit(self, steps: int, progress: bool = True) -> Result:
        """Train up to `steps` (total, counting resumed ones); stop cleanly on SIGINT/SIGTERM."""
        self.out.mkdir(parents=True, exist_ok=True)
        cfg = self.cfg
        data = FrameCountBrackets(
            scenes_for(cfg),
            simulator_config(cfg, cfg.data.size),
            cfg.data.frame_counts,
            cfg.run.seed,
            prealign=cfg.data.prealign,
        )
        sampler = StepBatches(cfg.data.frame_counts, cfg.data.batch, cfg.run.seed, self.step, steps)
        loader = DataLoader(
            data, batch_sampler=sampler, num_workers=cfg.data.workers, collate_fn=collate_brackets
        )
        val_items = self.validation_items()
        if self.step == 0:
            self._validate(val_items)  # the untrained network is the classical merge: the baseline
        stop = Stop()
        bar = tqdm(total=steps, initial=self.step, desc=cfg.model.name, unit="step", disable=not progress)
        batches = iter(loader)
        with stop.installed():
            while self.step < steps and not stop.requested:
                try:
                    batch = next(batches)
                except RuntimeError:  # a DataLoader worker killed by the same signal
                    if stop.requested:
                        break
                    raise
                t0 = time.perf_counter()
                row = self.train_step(batch)
                self.elapsed += time.perf_counter() - t0
                self._log({"step": self.step, **row})
                bar.update(1)
                bar.set_postfix(loss=f"{row['total']:.4f}", best=self.best_val)
                if self.step % cfg.run.val_every == 0 or self.step == steps:
                    self._validate(val_items)
                if self.step % cfg.run.checkpoint_every == 0 or self.step == steps or stop.requested:
                    self.save_checkpoint()
        bar.close()
        self._plot()
        if stop.requested:
            log.warning("stopped at step %d; continue with --resume", self.step)
            return Result(self.step, True, self.best_val, None, self.elapsed)
        stem = self.export(cfg.run.export)
        log.info("exported %s.safetensors (+ .json) after %d steps, %.0f s", stem, self.step, self.elapsed)
        return Result(self.step, False, self.best_val, stem, self.elapsed)

    def _validate(self, items: list[Item]) -> None:
        t0 = time.perf_counter()
        scores = self.validate(items)
        self._log({"step": self.step, **scores, "val_seconds": round(time.perf_counter() - t0, 2)})
        if self.best_val is None or scores["val_psnr"] > self.best_val:
            self.best_val = scores["val_psnr"]
            checkpoint.save(self.eval_model().cpu(), self.out / "best", {"step": self.step, **scores})
        log.info("step %d: validation %s (best %.2f dB)", self.step, scores, self.best_val)

    def _plot(self) -> None:
        from emvnet.training.plots import plot_log

        try:
            plot_log(self.log_path, self.out / "loss_curves.png", title=self.cfg.model.name)
        except (OSError, ValueError) as exc:  # a plot must never lose a finished training
            log.warning("could not plot %s: %s", self.log_path, exc)


def train(
    cfg: TrainConfig,
    out: Path,
    resume: bool = False,
    steps: int | None = None,
    objective: Objective | None = None,
    progress: bool = True,
) -> Result:
    """Train (or continue) one model; `steps` overrides `run.steps`."""
    threads = torch.get_num_threads()
    try:
        trainer = Trainer(cfg, out, objective)
        if resume:
            trainer.resume()
        elif trainer.latest_checkpoint() is not None:
            raise ConfigError(
                f"{out} already holds checkpoints: pass --resume to continue, or use another --out"
            )
        return trainer.fit(steps if steps is not None else cfg.run.steps, progress)
    finally:
        torch.set_num_threads(threads)  # run.threads is process-wide: give callers theirs back
