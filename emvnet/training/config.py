"""Training configuration: typed TOML tables -> frozen dataclasses, checked before any work starts.

A config file (configs/*.toml) has the sections [model] (a registered variant plus overrides of
its `ModelConfig`), [loss] (`LossConfig`, defaulting to the paper's weights for the task), [run],
[data] (with [data.simulator]), [optim] and, for distillation, [distill]. Unknown keys, wrong
types and values a class refuses are `ConfigError`s that name the key. `fingerprint` is what must
not change across a `--resume`.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from emvnet.device import DEVICE_NAMES, is_device_name
from emvnet.errors import EmvnetError
from emvnet.net.config import ModelConfig, variant
from emvnet.net.engine import Precision
from emvnet.training.data.simulator import SimulatorConfig
from emvnet.training.losses import LossConfig

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
    # Train (and validate) on frames pre-aligned as `NetworkMerger` does by default (ORB + ECC).
    prealign: bool = False
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
    if not is_device_name(run.device):
        raise ConfigError(f"run.device must be {DEVICE_NAMES}, got {run.device!r}")
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
    ("data", "prealign"): False,
    ("data", "simulator", "realistic_motion"): None,
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


def with_overrides(cfg: TrainConfig, device: str | None, workers: int | None) -> TrainConfig:
    if device is not None:
        cfg = replace(cfg, run=replace(cfg.run, device=device))
    if workers is not None:
        if workers < 0:
            raise ConfigError(f"--workers must be >= 0, got {workers}")
        cfg = replace(cfg, data=replace(cfg.data, workers=workers))
    return cfg
