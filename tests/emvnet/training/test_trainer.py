"""The trainer: smoke run and export, bit-exact resume, clean stops, typed config errors, distillation."""

from __future__ import annotations

import json
import signal
import tomllib
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch
from helpers.kalantari import write_scene
from safetensors.torch import load_file

from emvnet.cli import main
from emvnet.net import checkpoint
from emvnet.net.checkpoint import load_state
from emvnet.training.config import ConfigError, DistillStage, load_config, parse_config
from emvnet.training.distill import Distillation, stage_at
from emvnet.training.trainer import Inputs, train

CONFIGS = Path(__file__).resolve().parents[3] / "configs"
SMOKE = CONFIGS / "smoke.toml"
SHIPPED = sorted(p for p in CONFIGS.glob("*.toml") if p.name != "smoke.toml")


def smoke_doc(tmp: Path) -> dict[str, Any]:
    """The smoke config on synthetic scenes (an empty data root), independent of ../shared/data."""
    doc = tomllib.loads(SMOKE.read_text())
    empty = tmp / "no-data"
    empty.mkdir(exist_ok=True)
    doc["data"]["data_root"] = str(empty)
    return doc


def write_toml(path: Path, doc: dict[str, Any]) -> Path:
    lines = []

    def emit(prefix: str, table: dict[str, Any]) -> None:
        lines.append(f"[{prefix}]")
        subs = {k: v for k, v in table.items() if isinstance(v, dict)}
        for key, value in table.items():
            if key not in subs:
                lines.append(f"{key} = {json.dumps(value)}")
        for key, value in subs.items():
            emit(f"{prefix}.{key}", value)

    for section, table in doc.items():
        emit(section, table)
    path.write_text("\n".join(lines) + "\n")
    return path


def log_rows(run: Path) -> list[dict[str, Any]]:
    """log.jsonl without the timings."""
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k != "val_seconds"} for row in rows]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One 2-step smoke training through the CLI, shared by the tests that read its outputs."""
    tmp = tmp_path_factory.mktemp("smoke")
    write_scene(tmp / "kalantari" / "001", seed=1, size=(64, 64))
    doc = smoke_doc(tmp)
    doc["data"]["kalantari_dir"] = "kalantari"  # relative to the config file
    config = write_toml(tmp / "smoke.toml", doc)
    out = tmp / "run"
    assert main(["train", str(config), "--out", str(out), "--steps", "2"]) == 0
    return out


def test_smoke_training_exports_loadable_weights(smoke_run: Path) -> None:
    """A tiny model trains on CPU with finite losses and exports the checkpoint format."""
    rows = [json.loads(line) for line in (smoke_run / "log.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "total" in r]
    assert [r["step"] for r in steps] == [1, 2]
    assert all(np.isfinite(r[k]) for r in steps for k in ("total", "content", "adversarial", "ordinal"))
    vals = [r for r in rows if "val_psnr" in r]
    assert [r["step"] for r in vals] == [0, 2] and all(np.isfinite(r["val_psnr"]) for r in vals)
    assert all(np.isfinite(r["val_kalantari_psnr"]) for r in vals)
    model = checkpoint.load(smoke_run / "export" / "emvnet-smoke-rgb")
    assert model.config.name == "emvnet-smoke-rgb" and model.config.features.filters == 8
    meta = json.loads((smoke_run / "export" / "emvnet-smoke-rgb.json").read_text())
    assert meta["extra"]["trained_steps"] == 2


def test_loss_curve_png_is_written(smoke_run: Path) -> None:
    """loss_curves.png is a real image with a panel per term."""
    img = cv2.imread(str(smoke_run / "loss_curves.png"))
    assert img is not None and img.shape[0] > 200 and img.shape[1] > 400


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_resume_continues_the_same_trajectory(tmp_path: Path, precision: str) -> None:
    """2 steps + resume to 4 gives bitwise the weights, optimizer state and log of 4 straight steps."""
    doc = smoke_doc(tmp_path)
    doc["run"]["precision"] = precision
    cfg = parse_config(doc, str(SMOKE))
    straight, split = tmp_path / "straight", tmp_path / "split"
    train(cfg, straight, steps=4, progress=False)
    train(cfg, split, steps=2, progress=False)
    with pytest.raises(ConfigError, match="--resume"):
        train(cfg, split, steps=4, progress=False)
    train(cfg, split, resume=True, steps=4, progress=False)
    a = load_state(straight / "checkpoints" / "step-0000004.state")
    b = load_state(split / "checkpoints" / "step-0000004.state")
    for key in ("model", "ema", "discriminator"):
        for name, value in a[key].items():
            assert torch.equal(value, b[key][name]), f"{key}.{name} differs after resume"
    for sa, sb in zip(a["opt_g"]["state"].values(), b["opt_g"]["state"].values(), strict=True):
        assert torch.equal(sa["exp_avg_sq"], sb["exp_avg_sq"])
    assert log_rows(straight) == log_rows(split)
    wa = load_file(str(straight / "export" / "emvnet-smoke-rgb.safetensors"))
    wb = load_file(str(split / "export" / "emvnet-smoke-rgb.safetensors"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_signal_saves_a_checkpoint_and_stops(tmp_path: Path) -> None:
    """SIGTERM during a step: that step finishes, a checkpoint is written, nothing is exported."""
    cfg = parse_config(smoke_doc(tmp_path), str(SMOKE))

    def interrupt(step: int, inputs: Inputs, outs: Any, target: Any, mask: Any, terms: Any) -> Any:
        if step == 0:
            signal.raise_signal(signal.SIGTERM)
        return terms

    result = train(cfg, tmp_path / "run", steps=4, objective=interrupt, progress=False)
    assert result.interrupted and result.step == 1 and result.export is None
    assert (tmp_path / "run" / "checkpoints" / "step-0000001.state").is_file()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["run"].update(stpes=3), r"\[run\] has no key\(s\) \['stpes'\]"),
        (lambda d: d["run"].update(steps="ten"), r"run.steps must be int, got str"),
        (lambda d: d["run"].update(precision="fp8"), r"run.precision must be one of"),
        (lambda d: d["run"].update(device="tpu"), r"run.device must be cpu, cuda, cuda:N or auto"),
        (lambda d: d["optim"].update(betas=[0.9]), r"optim.betas must have 2 elements"),
        (lambda d: d["data"].update(frame_counts=[1, 3]), r"data.frame_counts must list frame counts"),
        (lambda d: d["model"].update(variant="emvnet-huge"), r"unknown EMVNet variant 'emvnet-huge'"),
        (lambda d: d["model"]["features"].update(unshuffle=3), r"\[model\] .*powers of 2"),
        (lambda d: d["loss"].update(ordinal_mode="sometimes"), r"loss.ordinal_mode must be one of"),
        (lambda d: d.update(extra={"a": 1}), r"unknown section\(s\) \['extra'\]"),
        (lambda d: d.update(distill={"teacher_weights": "t", "stages": [{"until": 0.5}]}), r"distill.stages"),
    ],
)
def test_config_errors_are_typed_and_name_the_key(tmp_path: Path, change: Any, message: str) -> None:
    """Bad keys, types and values raise ConfigError (exit code 2 in the CLI) naming the key."""
    doc = smoke_doc(tmp_path)
    change(doc)
    with pytest.raises(ConfigError, match=message):
        parse_config(doc, "smoke.toml")


def test_missing_or_broken_config_file(tmp_path: Path) -> None:
    """A missing file or invalid TOML is a ConfigError; the CLI answers exit code 2."""
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")
    (tmp_path / "bad.toml").write_text("[run\nsteps = 1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(tmp_path / "bad.toml")
    assert main(["train", str(tmp_path / "nope.toml")]) == 2


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_configs_parse(path: Path) -> None:
    """Every config in configs/ is valid and names a model of its file's task."""
    cfg = load_config(path)
    assert cfg.model.task in path.stem
    if cfg.distill is not None and cfg.distill.teacher_config:
        teacher = load_config(path.parent / cfg.distill.teacher_config)
        assert teacher.model.task == cfg.model.task and teacher.distill is None


def test_distillation_adds_an_imitation_term(smoke_run: Path, tmp_path: Path) -> None:
    """A student distilled from the smoke export logs a finite `distill` term; stages switch by progress."""
    doc = smoke_doc(tmp_path)
    doc["distill"] = {"teacher_weights": str(smoke_run / "export" / "emvnet-smoke-rgb")}
    config = write_toml(tmp_path / "student.toml", doc)
    assert main(["train", str(config), "--out", str(tmp_path / "student"), "--steps", "2"]) == 0
    rows = [json.loads(x) for x in (tmp_path / "student" / "log.jsonl").open()]
    assert all(np.isfinite(r["distill"]) for r in rows if "total" in r)
    stages = (DistillStage(0.5, 1.0, 0.0), DistillStage(1.0, 0.5, 1.0))
    assert stage_at(stages, 0, 10).task_weight == 0.0 and stage_at(stages, 5, 10).task_weight == 1.0
    cfg = load_config(config)
    assert cfg.distill is not None
    teacher = checkpoint.load(smoke_run / "export" / "emvnet-smoke-rgb")
    objective = Distillation(teacher, replace(cfg.distill, stages=stages), 10, cfg.loss.mu)
    assert objective.teacher.training is False


def test_content_phase_trains_without_the_discriminator(tmp_path: Path) -> None:
    """optim.content_steps: L_c alone (ESRGAN's PSNR-oriented phase) and no D step, then Eq. 4."""
    doc = smoke_doc(tmp_path)
    doc["optim"]["content_steps"] = 1
    rows = [r for r in _train_rows(doc, tmp_path) if "total" in r]
    assert set(rows[0]) >= {"content", "total"} and "discriminator" not in rows[0]
    assert rows[0]["total"] == rows[0]["content"]
    assert {"discriminator", "adversarial", "ordinal"} <= set(rows[1])


def _train_rows(doc: dict[str, Any], tmp_path: Path) -> list[dict[str, Any]]:
    train(parse_config(doc, str(SMOKE)), tmp_path / "run", steps=2, progress=False)
    return log_rows(tmp_path / "run")


def test_a_batch_is_all_blind_or_all_known() -> None:
    """Known and blind merges build volumes of different depths: the first sample decides the batch;
    a known batch carries the true ratios, a blind one the ratios estimated from the pixels."""
    from emvnet.training.trainer import prepare

    b, n = 3, 3
    batch = {
        "reference": torch.tensor([1, 1, 1]),
        "lin": torch.rand(b, n, 3, 8, 8),
        "sat": torch.zeros(b, n, 3, 8, 8, dtype=torch.bool),
        "ratios": torch.tensor([[0.3, 1.0, 3.5]] * b),
        "true_ratios": torch.tensor([[0.25, 1.0, 4.0]] * b),
        "hdr": torch.rand(b, 3, 8, 8),
        "mask": torch.ones(b, 1, 8, 8),
    }
    known, _, _ = prepare({**batch, "blind": torch.tensor([False, True, True])}, "rgb", torch.device("cpu"))
    assert not known.blind
    torch.testing.assert_close(known.ratios[0], torch.tensor([1.0, 0.25, 4.0]))  # reference first
    blind, _, _ = prepare({**batch, "blind": torch.tensor([True, False, False])}, "rgb", torch.device("cpu"))
    assert blind.blind
    torch.testing.assert_close(blind.ratios[0], torch.tensor([1.0, 0.3, 3.5]))


def test_checkpoints_from_before_an_added_field_still_resume() -> None:
    """A field added later (ADDED_FIELDS) at its default does not block --resume; other changes do."""
    from emvnet.training.config import ADDED_FIELDS, fingerprint, same_fingerprint

    cfg = parse_config({"model": {"variant": "emvnet-fast-rgb"}})
    current = fingerprint(cfg)
    older = json.loads(current)
    for path in ADDED_FIELDS:  # a checkpoint written before every added field
        node = older
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]
    assert same_fingerprint(json.dumps(older), current)
    changed = replace(
        cfg, data=replace(cfg.data, simulator=replace(cfg.data.simulator, middle_reference=True))
    )
    assert not same_fingerprint(json.dumps(older), fingerprint(changed))
    older["optim"]["lr"] = 1.0
    assert not same_fingerprint(json.dumps(older), current)
