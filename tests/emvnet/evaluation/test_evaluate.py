"""`emvnet eval` end to end on generated Kalantari-layout scenes with the classical merges."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers.kalantari import write_scene
from PIL import Image

from emvnet.evaluation import evaluate
from emvnet.frame import ExposureInfo, Frame

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "brackets" / "frobisher"


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    root = tmp_path / "kalantari"
    write_scene(root / "001", seed=1)
    write_scene(root / "002", seed=2)
    write_scene(root / "real", seed=3, gt=False)
    return root


def test_eval_writes_json_markdown_and_sheets(
    dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Classical models are scored per scene and on average; sheets exist for every scene."""
    report = tmp_path / "report"
    args = [str(dataset), "--report", str(report), "--model", "weighted", "--baselines", "debevec,robertson"]
    assert evaluate.main(args) == 0
    doc = json.loads((report / "metrics.json").read_text())
    assert [m["name"] for m in doc["methods"]] == ["weighted", "debevec", "robertson"]
    assert doc["methods"][0]["requested"] == "weighted"
    by_name = {s["name"]: s for s in doc["scenes"]}
    assert set(by_name) == {"001", "002", "real"}
    scored = by_name["001"]["results"]["weighted"]
    assert set(scored) >= {"psnr_mu", "ssim_mu", "psnr_l", "ssim_l", "pu21_psnr", "s_per_mp", "scale"}
    assert scored["scale"] == 1.0 and not by_name["001"]["aligned"]  # known exposures: no alignment
    # Units line up (reference units -> GT units) without any alignment: a good merge scores well.
    assert scored["psnr_mu"] > 30 and scored["ssim_mu"] > 0.9
    # No ground truth: reference fidelity and timing only.
    fidelity = {"ghost_pct", "colour_pct", "rf_psnr", "rf_coverage_pct"}
    assert set(by_name["real"]["results"]["debevec"]) == {"seconds", "s_per_mp", *fidelity}
    mean = doc["mean"]["weighted"]
    assert mean["scenes_scored"] == 2 and mean["psnr_mu"] == pytest.approx(
        np.mean([by_name[n]["results"]["weighted"]["psnr_mu"] for n in ("001", "002")])
    )
    for name in ("001", "002", "real"):
        sheet = Image.open(report / f"sheet_{name}.png")
        assert sheet.width > 3 * 320
    # A ground-truth sheet has a third row (error maps) that the frames-only sheet lacks.
    assert Image.open(report / "sheet_001.png").height > Image.open(report / "sheet_real.png").height
    assert set(scored) >= fidelity and doc["mean"]["weighted"].keys() >= fidelity
    md = (report / "metrics.md").read_text()
    assert "| weighted |" in md and "PU21-PSNR" in md and "ghost %" in md and "## 001" in md
    out = capsys.readouterr().out
    assert out.startswith("| method |") and "| robertson |" in out


def test_blind_eval_aligns_every_method_alike(dataset: Path, tmp_path: Path) -> None:
    """--blind withholds exposures and scale-aligns every output of every scored scene; each
    records how far its estimated ratios can be trusted."""
    report = tmp_path / "blind"
    args = [str(dataset), "--report", str(report), "--model", "none", "--baselines", "weighted,mertens"]
    assert evaluate.main([*args, "--blind", "--no-sheets", "--limit", "2"]) == 0
    doc = json.loads((report / "metrics.json").read_text())
    assert len(doc["scenes"]) == 2 and not list(report.glob("*.png"))
    for scene in doc["scenes"]:
        assert scene["blind"] and scene["aligned"]
        assert {"weighted", "mertens"} == set(scene["results"])
        assert all(r["scale"] != 1.0 for r in scene["results"].values())
        assert {r["blind_confidence"] for r in scene["results"].values()} <= {"high", "low"}
        assert scene["blind_confidence"] in {"high", "low"}
    assert "ratios" in (report / "metrics.md").read_text()


def test_align_always_and_no_gt(dataset: Path, tmp_path: Path) -> None:
    """--align always aligns known-exposure merges; --no-gt scores nothing but still draws sheets."""
    report = tmp_path / "always"
    assert (
        evaluate.main(
            [
                str(dataset / "001"),
                "--report",
                str(report),
                "--model",
                "weighted",
                "--baselines",
                "",
                "--align",
                "always",
            ]
        )
        == 0
    )
    (scene,) = json.loads((report / "metrics.json").read_text())["scenes"]
    assert scene["aligned"] and scene["results"]["weighted"]["scale"] != 1.0
    report = tmp_path / "nogt"
    assert (
        evaluate.main(
            [str(dataset), "--report", str(report), "--model", "weighted", "--baselines", "", "--no-gt"]
        )
        == 0
    )
    doc = json.loads((report / "metrics.json").read_text())
    assert all("psnr_mu" not in s["results"]["weighted"] for s in doc["scenes"])
    assert len(list(report.glob("sheet_*.png"))) == 3
    # Without ground truth the tables show reference fidelity and no empty PSNR columns.
    assert doc["mean"]["weighted"]["ghost_pct"] < 1 and doc["mean"]["weighted"]["rf_psnr"] > 30
    md = (report / "metrics.md").read_text()
    assert "| ghost % | colour % | RF-PSNR |" in md and "PSNR-mu" not in md


def test_exif_times_are_known_times_and_blind_drops_them(tmp_path: Path) -> None:
    """A scene without exposures.txt merges on its frames' EXIF times; --blind withholds them."""
    scene = tmp_path / "frobisher"
    shutil.copytree(FIXTURE, scene)
    for blind, times in ((False, "EXIF"), (True, None)):
        report = tmp_path / f"r{blind}"
        args = [str(scene), "--report", str(report), "--model", "weighted", "--baselines", "", "--no-sheets"]
        assert evaluate.main(args + ["--blind"] * blind) == 0
        (record,) = json.loads((report / "metrics.json").read_text())["scenes"]
        assert record["times"] == times and record["blind"] is blind
        assert record["results"]["weighted"]["rf_coverage_pct"] > 10


def test_blind_frames_lose_their_exif_times() -> None:
    """--blind withholds EXIF times too (a merge reads them when none are given); ISO stays."""
    frame = Frame(
        np.zeros((4, 4, 3), np.float32), "display", "rgb", "jpeg", 8, exposure=ExposureInfo(0.5, 100.0)
    )
    (blind,) = evaluate.without_exposure_times([frame])
    assert blind.exposure.exposure_time is None and blind.exposure.iso == 100.0
    assert frame.exposure.exposure_time == 0.5


def test_bad_input_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A missing folder or an unknown model is reported in one line with exit code 2."""
    assert evaluate.main([str(tmp_path / "missing"), "--report", str(tmp_path / "r")]) == 2
    assert "not a folder of scenes" in capsys.readouterr().err
    write_scene(tmp_path / "d" / "s", seed=4)
    assert evaluate.main([str(tmp_path / "d"), "--report", str(tmp_path / "r"), "--model", "nope"]) == 2
    assert "unknown model" in capsys.readouterr().err


def test_add_parser_registers_the_eval_command() -> None:
    """The lead wires `add_parser` into the emvnet CLI: `eval` parses and runs cmd_eval."""
    parser = argparse.ArgumentParser(prog="emvnet")
    evaluate.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["eval", "data", "--baselines", "debevec", "--blind"])
    assert args.run is evaluate.cmd_eval and args.blind and args.baselines == "debevec"
    opts = evaluate.options_from_args(args)
    assert opts.methods == ("auto", "debevec") and opts.report_dir == Path("report")


def test_scenes_in_subfolders_get_a_mean_per_folder(tmp_path: Path) -> None:
    """Kalantari's Test/PAPER + Test/EXTRA or the dev set's settings: one mean per folder too."""
    root = tmp_path / "grouped"
    write_scene(root / "easy" / "a", seed=1)
    write_scene(root / "easy" / "b", seed=2)
    write_scene(root / "hard" / "c", seed=3, evs=(-3.0, 0.0, 3.0))
    report = tmp_path / "grouped-report"
    args = ["--model", "weighted", "--baselines", "", "--no-sheets"]
    assert evaluate.main([str(root), "--report", str(report), *args]) == 0
    doc = json.loads((report / "metrics.json").read_text())
    assert set(doc["groups"]) == {"easy", "hard"}
    psnr = {s["name"]: s["results"]["weighted"]["psnr_mu"] for s in doc["scenes"]}
    assert doc["groups"]["easy"]["weighted"]["psnr_mu"] == pytest.approx(
        (psnr["easy/a"] + psnr["easy/b"]) / 2
    )
    assert doc["groups"]["hard"]["weighted"]["scenes_scored"] == 1
    md = (report / "metrics.md").read_text()
    assert "## Mean over easy" in md and "## Mean over hard" in md
    # One folder of scenes: no per-folder means.
    flat = tmp_path / "flat-report"
    assert evaluate.main([str(root / "easy"), "--report", str(flat), *args]) == 0
    assert "groups" not in json.loads((flat / "metrics.json").read_text())
