"""`emvnet train`: the EMVNet trainer (Sec. 4.1-4.4) with typed TOML configs, resume and export.

The trainer composes what other modules define: the network (`model.EMVNet`), the objective
L_G = L_p + lambda L_a + eta L_c + alpha L_s (`losses.GeneratorLoss`, Eq. 4, the paper's per-task
weights from `LossConfig.for_task`), the discriminator's optimizer (built from
`loss.adversarial.discriminator`), Adam at 1e-4 halved every `optim.halve_every` steps (the paper:
every 200K iterations at batch 8; the CPU configs scale this down and say so), and the simulator's
brackets (`data.SyntheticBrackets` over `default_scenes`). Distillation (`distill.py`) plugs in as
an `Objective` that rewrites the loss terms; nothing here is subclassed.

Determinism: batch `s` is a function of (seed, s) only (one frame count per batch, drawn from the
step; items drawn by index), the ordinal loss's pairs come from a generator seeded by the step, and
a checkpoint holds the model, the EMA, the discriminator, both optimizers and schedulers, the
gradient scaler, every RNG state and the step. So `--resume` continues the uninterrupted
trajectory bit-exactly on CPU (same thread count; CUDA kernels may not be deterministic).

Outputs in `--out DIR`: checkpoints/step-NNNNNNN.state (safetensors + JSON structure, no pickle;
the last two are kept), log.jsonl (one JSON line per step with every loss term, and one per
validation), loss_curves.png, best.{safetensors,json} (the best validation PSNR),
export/<name>.{safetensors,json} (the `emvnet.checkpoint` format, ready to copy into
emvnet/weights/). SIGINT/SIGTERM save a checkpoint and stop (exit status 130).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import signal
import time
import tomllib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from types import FrameType, UnionType
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm import tqdm

from emvnet import checkpoint
from emvnet.config import ModelConfig, variant
from emvnet.data.datasets import Item, SyntheticBrackets, collate_brackets
from emvnet.data.scenes import SceneSource, default_scenes
from emvnet.data.simulator import SimulatorConfig
from emvnet.engine import Precision, resolve_device, resolve_precision
from emvnet.errors import EmvnetError
from emvnet.losses import GeneratorLoss, LossConfig
from emvnet.matching_volume import reference_first
from emvnet.metrics import hdr_metrics, psnr
from emvnet.model import EMVNet

log = logging.getLogger(__name__)

KEEP_CHECKPOINTS = 2
EXIT_INTERRUPTED = 130


# ---- typed TOML tables --------------------------------------------------------------------------


class ConfigError(EmvnetError):
    """A training config is missing, malformed, or has an unknown key or a value of the wrong type."""

    code = "invalid_config"


def _typed(value: Any, hint: Any, where: str, base: Any = None) -> Any:
    """`value` (parsed TOML) checked against the annotation `hint`; ConfigError naming `where`."""
    origin, args = get_origin(hint), get_args(hint)
    if is_dataclass(hint):
        if not isinstance(value, dict):
            raise ConfigError(f"[{where}] must be a table, got {type(value).__name__}")
        return build_dataclass(hint, value, where, base)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where} must be one of {', '.join(map(repr, args))}, got {value!r}")
        return value
    if origin in (Union, UnionType):
        arms = [a for a in args if a is not type(None)]
        errors = []
        for arm in arms:
            try:
                return _typed(value, arm, where, base)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError("; ".join(errors))
    if origin is tuple:
        if not isinstance(value, list):
            raise ConfigError(f"{where} must be an array, got {type(value).__name__} {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_typed(v, args[0], f"{where}[{k}]") for k, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{where} must have {len(args)} elements, got {len(value)}")
        return tuple(_typed(v, a, f"{where}[{k}]") for k, (v, a) in enumerate(zip(value, args, strict=True)))
    if hint is bool and isinstance(value, bool):
        return value
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if hint is str and isinstance(value, str):
        return value
    name = getattr(hint, "__name__", str(hint))
    raise ConfigError(f"{where} must be {name}, got {type(value).__name__} {value!r}")


def build_dataclass(cls: Any, table: dict[str, Any], where: str, base: Any = None) -> Any:
    """An instance of the frozen dataclass `cls`: `base` (or the defaults) with `table`'s keys typed.

    Unknown keys, wrong types and values the class itself refuses are ConfigErrors; nested
    dataclass fields are sub-tables that override the base's sub-config field by field.
    """
    hints = get_type_hints(cls)
    known = [f.name for f in fields(cls) if f.init]
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise ConfigError(f"[{where}] has no key(s) {unknown}; known: {', '.join(known)}")
    changes = {
        key: _typed(value, hints[key], f"{where}.{key}", getattr(base, key, None))
        for key, value in table.items()
    }
    try:
        return replace(base, **changes) if base is not None else cls(**changes)
    except (TypeError, ValueError, AssertionError) as exc:
        raise ConfigError(f"[{where}] {exc}") from None


# ---- configuration ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunConfig:
    seed: int = 0
    steps: int = 1000
    device: str = "cpu"  # "auto" = CUDA when available (teachers), else cpu
    precision: Precision = "auto"  # auto: bf16 on CUDA / CPUs with native bf16, fp16 on older GPUs
    threads: int = 0  # torch intra-op threads; 0 = torch's default (one per core)
    checkpoint_every: int = 100  # steps; also on SIGINT/SIGTERM and at the end
    val_every: int = 250
    export: Literal["best", "last"] = "best"


@dataclass(frozen=True)
class DataConfig:
    # The simulator's crop side in output pixels (raw, isp: sensor pixels, so packed frames are half).
    size: int = 128
    batch: int = 8
    # One frame count per batch (the model needs equal n in a batch): drawn per step from these.
    frame_counts: tuple[int, ...] = (2, 3)
    workers: int = 0
    # "" = ../shared/data next to the checkout (synthetic scenes when absent). Relative paths in a
    # config are relative to the config file's folder.
    data_root: str = ""
    photo_weight: float = 0.25
    val_seed: int = 1_000_003  # a different stream from any training seed
    val_samples: int = 16
    val_size: int = 256
    # Optional real scenes in the Kalantari layout (`emvnet eval`), RGB only: logged as
    # val_kalantari_psnr; the best checkpoint is still chosen on the synthetic set (reproducible).
    kalantari_dir: str = ""
    kalantari_limit: int = 4  # scenes per validation: full-size merges are slow on a CPU
    # mode, size and frames_range are set by the trainer; everything else may be overridden.
    simulator: SimulatorConfig = field(default_factory=SimulatorConfig)


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 1e-4  # Sec. 4.3
    d_lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    halve_every: int = 200_000  # Sec. 4.3: x0.5 every 200K iterations at batch 8
    grad_clip: float = 1.0  # max global norm of the generator's gradients; 0 = off
    ema_decay: float = 0.999  # EMA of the weights, validated and exported; 0 = off
    # ESRGAN's recipe, which the paper follows (Sec. 4.2): first a PSNR-oriented phase on the content
    # loss L_c alone (weight 1; no discriminator), then Eq. 4. With Eq. 4's weights L_c (eta = 0.001)
    # is ~1e-4 of L_p, so a short run from scratch otherwise barely learns the pixel values.
    content_steps: int = 0


@dataclass(frozen=True)
class DistillStage:
    until: float  # end of the stage as a fraction of run.steps
    distill_weight: float
    task_weight: float


@dataclass(frozen=True)
class DistillConfig:
    """Sec. 5.4.3: the student imitates a teacher's outputs, in stages (see `distill.py`)."""

    teacher_weights: str = ""  # a checkpoint stem; relative paths from the config file's folder
    teacher_config: str = ""  # else: train the teacher first with this config (into OUT/teacher)
    # "Step-to-step": imitate first, then add the task losses, then let them lead. The imitation L1
    # (mu-law) is ~0.01-0.05 where the perceptual term is ~2: weight 10 makes them comparable.
    stages: tuple[DistillStage, ...] = (
        DistillStage(0.3, 1.0, 0.0),
        DistillStage(0.8, 10.0, 1.0),
        DistillStage(1.0, 2.5, 1.0),
    )


@dataclass(frozen=True)
class TrainConfig:
    model: ModelConfig
    loss: LossConfig
    run: RunConfig = field(default_factory=RunConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    distill: DistillConfig | None = None
    source: str = ""  # the config file, for relative paths and the model card


def _check(cfg: TrainConfig) -> None:
    """Range checks that types cannot express; ConfigError names the key and what to do."""
    run, data, opt = cfg.run, cfg.data, cfg.optim
    positive = {
        "run.steps": run.steps,
        "run.checkpoint_every": run.checkpoint_every,
        "run.val_every": run.val_every,
        "data.size": data.size,
        "data.batch": data.batch,
        "data.val_samples": data.val_samples,
        "data.val_size": data.val_size,
        "optim.halve_every": opt.halve_every,
    }
    if opt.content_steps < 0:
        raise ConfigError(f"optim.content_steps must be >= 0, got {opt.content_steps}")
    for key, value in positive.items():
        if value < 1:
            raise ConfigError(f"{key} must be >= 1, got {value}")
    if run.threads < 0 or data.workers < 0:
        raise ConfigError("run.threads and data.workers must be >= 0")
    if data.kalantari_dir and cfg.model.task != "rgb":
        raise ConfigError("data.kalantari_dir holds RGB scenes: only rgb models can be validated on it")
    if not data.frame_counts or any(not 2 <= n <= 4 for n in data.frame_counts):
        raise ConfigError(f"data.frame_counts must list frame counts in 2..4, got {list(data.frame_counts)}")
    if cfg.model.task != "rgb" and (data.size % 2 or data.val_size % 2):
        raise ConfigError("data.size and data.val_size must be even for raw and isp models (Bayer pairs)")
    if not (opt.lr > 0 and opt.d_lr > 0 and all(0 <= b < 1 for b in opt.betas)):
        raise ConfigError("optim.lr and optim.d_lr must be > 0 and optim.betas in [0, 1)")
    if opt.grad_clip < 0 or not 0 <= opt.ema_decay < 1:
        raise ConfigError("optim.grad_clip must be >= 0 and optim.ema_decay in [0, 1)")
    if run.device not in ("auto", "cpu", "cuda") and not run.device.startswith("cuda:"):
        raise ConfigError(f"run.device must be auto, cpu, cuda or cuda:N, got {run.device!r}")
    if cfg.distill is not None:
        d = cfg.distill
        if not (d.teacher_weights or d.teacher_config):
            raise ConfigError("[distill] needs teacher_weights (a checkpoint stem) or teacher_config")
        ends = [s.until for s in d.stages]
        if not ends or ends != sorted(ends) or ends[-1] != 1.0 or ends[0] <= 0:
            raise ConfigError(f"[[distill.stages]] `until` must rise to 1.0, got {ends}")
        if any(s.distill_weight < 0 or s.task_weight < 0 for s in d.stages):
            raise ConfigError("[[distill.stages]] weights must be >= 0")


def parse_config(doc: dict[str, Any], source: str = "<config>") -> TrainConfig:
    """A TrainConfig from a parsed TOML document; ConfigError on any unknown key or bad value."""
    unknown = set(doc) - {"model", "loss", "run", "data", "optim", "distill"}
    if unknown:
        known = "model, loss, run, data, optim, distill"
        raise ConfigError(f"{source}: unknown section(s) {sorted(unknown)}; known: {known}")
    model_doc = dict(doc.get("model", {}))
    if "variant" not in model_doc:
        raise ConfigError(f"{source}: [model] needs `variant`, one of the registered names")
    name = model_doc.pop("variant")
    try:
        base = variant(str(name))
    except KeyError as exc:
        raise ConfigError(f"{source}: [model] {exc.args[0]}") from None
    model = build_dataclass(ModelConfig, model_doc, "model", base)
    task: Literal["hdr", "isp"] = "isp" if model.task == "isp" else "hdr"
    loss = build_dataclass(LossConfig, doc.get("loss", {}), "loss", LossConfig.for_task(task))
    distill = None
    if "distill" in doc:
        distill = build_dataclass(DistillConfig, doc["distill"], "distill", DistillConfig())
    cfg = TrainConfig(
        model=model,
        loss=loss,
        run=build_dataclass(RunConfig, doc.get("run", {}), "run", RunConfig()),
        data=build_dataclass(DataConfig, doc.get("data", {}), "data", DataConfig()),
        optim=build_dataclass(OptimConfig, doc.get("optim", {}), "optim", OptimConfig()),
        distill=distill,
        source=source,
    )
    _check(cfg)
    return cfg


def load_config(path: str | Path) -> TrainConfig:
    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"training config {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse_config(doc, str(path))


def fingerprint(cfg: TrainConfig) -> str:
    """What must not change across a resume (steps, workers, device and paths may)."""
    same = replace(cfg, run=replace(cfg.run, steps=0, device="", threads=0), source="")
    same = replace(same, data=replace(same.data, workers=0))
    return json.dumps(asdict(same), sort_keys=True, default=str)


# Config fields added after checkpoints were written, with the default that reproduces the older
# behaviour: a checkpoint without the field resumes under a config that keeps that default.
ADDED_FIELDS: dict[tuple[str, ...], object] = {
    ("data", "simulator", "middle_reference"): False,
}


def same_fingerprint(saved: str, current: str) -> bool:
    """Whether a checkpoint's fingerprint matches the config's, allowing ADDED_FIELDS at default."""
    old, new = json.loads(saved), json.loads(current)
    for path, default in ADDED_FIELDS.items():
        node_old, node_new = old, new
        for key in path[:-1]:
            node_old, node_new = node_old.get(key, {}), node_new.get(key, {})
        if path[-1] not in node_old and node_new.get(path[-1]) == default:
            node_new.pop(path[-1])
    return bool(old == new)


# ---- data ---------------------------------------------------------------------------------------


class FrameCountBrackets(Dataset[Item]):
    """SyntheticBrackets per frame count, indexed by (n, index): a batch shares one n."""

    def __init__(self, scenes: SceneSource, sim: SimulatorConfig, counts: tuple[int, ...], seed: int) -> None:
        self.sets = {n: SyntheticBrackets(scenes, replace(sim, frames_range=(n, n)), seed) for n in counts}

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

    def gains(self, model: EMVNet) -> Tensor:
        return model.gains(self.ratios, self.blind)  # (B, n-1, N_E)


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
    return Inputs(lin, sat, ratios, blind), target, mask


# ---- the trainer --------------------------------------------------------------------------------

# Rewrites the task terms (e.g. adds distillation): (step, inputs, outputs, target, mask, terms) -> terms.
Objective = Callable[[int, Inputs, list[Tensor], Tensor, Tensor, dict[str, Tensor]], dict[str, Tensor]]


def _autocast(device: torch.device, dtype: torch.dtype | None) -> AbstractContextManager[object]:
    return nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


def pick_device(requested: str) -> torch.device:
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    return resolve_device(requested)


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
        self.device = pick_device(cfg.run.device)
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
        with _autocast(dev, self.dtype):
            outs = self.model(
                inputs.lin, inputs.sat, inputs.ratios, inputs.gains(self.model), all_outputs=True
            )
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
            with _autocast(dev, self.dtype):
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
        data = SyntheticBrackets(scenes_for(self.cfg), sim, seed=d.val_seed, length=d.val_samples)
        return [data[i] for i in range(d.val_samples)]

    @torch.no_grad()
    def validate(self, items: list[Item]) -> dict[str, float]:
        """Mean PSNR-mu (isp: PSNR of the display image) over the fixed validation brackets."""
        model = self.eval_model()
        scores, linear = [], []
        for item in items:
            batch = collate_brackets([item])
            inputs, target, mask = prepare(batch, self.cfg.model.task, self.device)
            with _autocast(self.device, self.dtype):
                y = model(inputs.lin, inputs.sat, inputs.ratios, inputs.gains(model))[-1]
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
        from emvnet.data.kalantari import find_scenes
        from emvnet.engine import NetworkMerger
        from emvnet.evaluate import EvalOptions, Method, evaluate_scene
        from emvnet.infer import Enhancer
        from emvnet.registry import ModelSpec

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
            scenes_for(cfg), simulator_config(cfg, cfg.data.size), cfg.data.frame_counts, cfg.run.seed
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
        from emvnet.plots import plot_log

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


# ---- command line -------------------------------------------------------------------------------


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `train` on the `emvnet` command's subparsers (sets `run=cmd_train`)."""
    parser = subparsers.add_parser(
        "train",
        help="train (or distill) a model from a TOML config",
        description=(
            "Train the model a TOML config describes (configs/*.toml); write checkpoints, log.jsonl, "
            "loss_curves.png and export/<name>.safetensors + .json to --out. SIGINT/SIGTERM save a "
            "checkpoint and stop; --resume continues from the last one."
        ),
    )
    parser.add_argument("config", metavar="CONFIG", help="a training config (TOML)")
    parser.add_argument(
        "--out", default=None, metavar="DIR", help="output folder (default: runs/<config name>)"
    )
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint in DIR")
    parser.add_argument(
        "--steps", type=int, default=None, metavar="N", help="total steps (overrides run.steps)"
    )
    parser.add_argument(
        "--device", choices=("cpu", "cuda", "auto"), default=None, help="overrides run.device"
    )
    parser.add_argument("--workers", type=int, default=None, metavar="N", help="overrides data.workers")
    parser.set_defaults(run=cmd_train)
    return parser


def with_overrides(cfg: TrainConfig, device: str | None, workers: int | None) -> TrainConfig:
    if device is not None:
        cfg = replace(cfg, run=replace(cfg.run, device=device))
    if workers is not None:
        if workers < 0:
            raise ConfigError(f"--workers must be >= 0, got {workers}")
        cfg = replace(cfg, data=replace(cfg.data, workers=workers))
    return cfg


def cmd_train(args: argparse.Namespace) -> int:
    cfg = with_overrides(load_config(args.config), args.device, args.workers)
    if args.steps is not None and args.steps < 1:
        raise ConfigError(f"--steps must be >= 1, got {args.steps}")
    out = Path(args.out) if args.out else Path("runs") / Path(args.config).stem
    objective = None
    if cfg.distill is not None:
        from emvnet.distill import distillation_objective

        objective = distillation_objective(cfg, out, args.resume, args.device, args.workers, args.steps)
        if objective is None:  # the teacher's training was interrupted
            return EXIT_INTERRUPTED
    result = train(cfg, out, args.resume, args.steps, objective)
    return EXIT_INTERRUPTED if result.interrupted else 0
