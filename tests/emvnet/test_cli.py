"""`emvnet enhance` end to end: real brackets in, files other tools can open out, exit codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import imageio.v3
import numpy as np
import pytest
from helpers.brackets import frobisher_heic
from helpers.hdrfiles import assert_within_tolerance, avif_cicp, decode_avif, decode_ultrahdr, jpeg_images
from PIL import Image

from emvnet.cli import main
from emvnet.io import read_image
from emvnet.io.rendition import render

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "brackets" / "frobisher"
FRAMES = [str(FIXTURE / f"IMG_260{i}.jpg") for i in range(3)]
SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "brackets"


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "emvnet.cli", *args], capture_output=True, text=True, timeout=120, check=False
    )


def frames_without_exif(folder: Path) -> list[str]:
    """The fixture bracket re-saved as PNGs, which carry no exposure times: merged blind."""
    stripped = []
    for i, path in enumerate(FRAMES):
        p = folder / f"noexif{i}.png"
        Image.open(path).save(p)
        stripped.append(str(p))
    return stripped


def open_with_opencv(path: Path) -> np.ndarray:
    """Decode a file with OpenCV in a fresh process (EXR support must be enabled before import)."""
    code = (
        "import os, sys; os.environ['OPENCV_IO_ENABLE_OPENEXR'] = '1'; import cv2, numpy as np; "
        "im = cv2.imread(sys.argv[1], cv2.IMREAD_UNCHANGED); "
        "print(im.shape, im.dtype, float(np.nanmax(im)))"
    )
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True)
    assert "None" not in out.stdout, f"OpenCV could not read {path}: {out.stderr}"
    return np.array(out.stdout.split())


@pytest.mark.parametrize("ext", [".exr", ".hdr", ".tif", ".png", ".jpg"])
def test_enhance_fixture_to_every_format(tmp_path: Path, ext: str) -> None:
    """The bundled bracket merges to each output format, which OpenCV (and imageio) then open."""
    out = tmp_path / f"merged{ext}"
    assert main(["-q", "enhance", *FRAMES, "-o", str(out)]) == 0
    assert out.stat().st_size > 0
    open_with_opencv(out)
    if ext in (".tif", ".png", ".jpg"):
        assert imageio.v3.imread(out).shape == (320, 480, 3)
    back = read_image(out)
    assert (back.width, back.height) == (480, 320)
    if ext in (".exr", ".hdr", ".tif"):
        assert back.domain == "linear"
        assert back.data.max() > 1.5, "an HDR merge of a 1/8..8 s bracket must exceed the reference's clip"
    else:
        assert back.domain == "display"


def test_enhance_to_hdr_display_formats(tmp_path: Path) -> None:
    """The bundled bracket as Ultra HDR and HDR AVIF decodes (libultrahdr, libavif) to the merge's
    radiance within tolerance, and the Ultra HDR base looks like the PNG of the same merge."""
    outputs = {name: tmp_path / name for name in ("m.exr", "m.png", "m.jpg", "m.avif")}
    for name, out in outputs.items():
        flags = ["--gain-map"] if name == "m.jpg" else []
        assert main(["-q", "enhance", *FRAMES, "-o", str(out), *flags, "--exr-precision", "float"]) == 0
    rendition = render(read_image(outputs["m.exr"]).data)  # the merge's radiance, in SDR-white units
    uhdr = outputs["m.jpg"].read_bytes()
    assert len(jpeg_images(uhdr)) == 2, "--gain-map writes a base and a gain map image"
    assert_within_tolerance(decode_ultrahdr(uhdr), rendition.lin)
    assert_within_tolerance(decode_avif(outputs["m.avif"].read_bytes()), rendition.lin)
    assert avif_cicp(outputs["m.avif"].read_bytes()) == (9, 16, 9, True)
    base = np.asarray(Image.open(outputs["m.jpg"]).convert("RGB")).astype(np.float32)
    png = np.asarray(Image.open(outputs["m.png"])).astype(np.float32)
    assert np.abs(base - png).mean() < 2.0, "the SDR base is today's PNG, JPEG-coded"


def test_enhance_heic_bracket(tmp_path: Path) -> None:
    """A HEIC bracket made with pillow-heif (EXIF 1/8, 1, 8 s) merges by its EXIF times."""
    frames = []
    for i, data in enumerate(frobisher_heic()):
        frames.append(tmp_path / f"IMG_{i}.HEIC")
        frames[-1].write_bytes(data)
    out = tmp_path / "heic.uhdr.jpg"
    result = run_cli("enhance", *map(str, frames), "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert "480x320 heic, exposures 1/8, 1, 8 s (EXIF)" in result.stderr, result.stderr
    assert decode_ultrahdr(out.read_bytes()).shape == (320, 480, 3)


def test_exr_opens_in_openexr_and_float_precision(tmp_path: Path) -> None:
    """EXR outputs open with the OpenEXR package, as half by default and float on request."""
    import OpenEXR

    for precision, want in (("half", np.float16), ("float", np.float32)):
        out = tmp_path / f"{precision}.exr"
        assert main(["-q", "enhance", *FRAMES, "-o", str(out), "--exr-precision", precision]) == 0
        with OpenEXR.File(str(out)) as f:
            channels = f.channels()
            pixels = next(iter(channels.values())).pixels
            assert pixels.dtype == want, f"{precision}: got {pixels.dtype}"


def test_exposures_flag_wins_over_exif(tmp_path: Path) -> None:
    """Given times scale the result differently from EXIF ones (here: reference units shift)."""
    a, b = tmp_path / "exif.tif", tmp_path / "given.tif"
    assert main(["-q", "enhance", *FRAMES, "-o", str(a), "--reference", "1"]) == 0
    # Claiming a 4x wider bracket than EXIF says stretches the radiance range of the merge.
    assert (
        main(["-q", "enhance", *FRAMES, "-o", str(b), "--reference", "1", "--exposures", "1/32", "1", "32"])
        == 0
    )
    assert read_image(b).data.max() > 2 * read_image(a).data.max()


def test_blind_merge_and_models(tmp_path: Path) -> None:
    """Frames without EXIF merge blind, with each classical model."""
    stripped = frames_without_exif(tmp_path)
    for model in ("auto", "debevec", "robertson", "mertens"):
        out = tmp_path / f"{model}.exr"
        assert main(["-q", "enhance", *stripped, "-o", str(out), "--model", model]) == 0, model
        assert np.isfinite(read_image(out).data).all()


def test_progress_and_timing_on_stderr(tmp_path: Path) -> None:
    """A real process reports timing on stderr and keeps stdout empty."""
    result = run_cli("enhance", *FRAMES, "-o", str(tmp_path / "m.png"))
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert "merged with" in result.stderr and "s/MP" in result.stderr
    assert "exposures 1/8, 1, 8 s (EXIF)" in result.stderr
    assert "response gamma" in result.stderr and "exposure ratios" not in result.stderr


def test_blind_merge_reports_its_ratios(tmp_path: Path) -> None:
    """A blind merge says which exposure ratios and response it assumed, in reference units."""
    stripped = frames_without_exif(tmp_path)
    result = run_cli("enhance", *stripped, "-o", str(tmp_path / "b.png"))
    assert result.returncode == 0, result.stderr
    line = next(x for x in result.stderr.splitlines() if "exposure ratios to the reference" in x)
    ratios = [float(r) for r in line.split("reference ")[1].split(" (")[0].split(", ")]
    assert ratios[1] == 1.0 and ratios[0] < 0.2 and ratios[2] > 5  # 1/8, 1, 8 s, read from the pixels
    assert "confidence low" in line or "confidence high" in line


def test_ignore_exif_merges_blind_and_warns_when_unsure(tmp_path: Path) -> None:
    """--ignore-exif withholds the EXIF times: the merge is blind and says how sure its ratios are
    (the resized demo bracket reads 0.8 stop off blind, so it warns); with --exposures it is not blind."""
    result = run_cli("enhance", *FRAMES, "-o", str(tmp_path / "b.png"), "--ignore-exif")
    assert result.returncode == 0, result.stderr
    assert "exposure times ignored (blind merge)" in result.stderr
    assert "confidence low" in result.stderr and "may be a stop or more off" in result.stderr
    stated = run_cli(
        "enhance", *FRAMES, "-o", str(tmp_path / "k.png"), "--ignore-exif", "--exposures", "1/8", "1", "8"
    )
    assert stated.returncode == 0, stated.stderr
    assert "exposures 1/8, 1, 8 s (given)" in stated.stderr and "confidence" not in stated.stderr


def test_help_is_complete() -> None:
    """`enhance --help` documents every option and the exit codes."""
    result = run_cli("enhance", "--help")
    assert result.returncode == 0
    for option in (
        "--exposures",
        "--ignore-exif",
        "--model",
        "--reference",
        "--device",
        "--output",
        "--exr-precision",
        "--gain-map",
        "--hdr-headroom",
        "--hdr-transfer",
        "--avif-bits",
        ".uhdr.jpg",
        "Exit codes",
    ):
        assert option in result.stdout


def test_models_lists_registry() -> None:
    """`emvnet models` lists the merges and says which networks have weights."""
    result = run_cli("models")
    assert result.returncode == 0
    for name in ("auto", "debevec", "robertson", "mertens"):
        assert name in result.stdout
    rows = {line.split()[0]: line for line in result.stdout.splitlines()}
    assert rows["emvnet-fast-rgb"].endswith("[weights installed]")  # shipped in emvnet/weights
    assert rows["emvnet-paper-rgb"].endswith("[no weights]")


def _bad_inputs(tmp: Path) -> dict[str, list[str]]:
    text = tmp / "notes.jpg"
    text.write_text("not an image at all\n")
    truncated = tmp / "truncated.jpg"
    truncated.write_bytes(Path(FRAMES[0]).read_bytes()[:3000])
    small = tmp / "small.jpg"
    Image.open(FRAMES[1]).resize((240, 160)).save(small)
    empty = tmp / "empty.png"
    empty.write_bytes(b"")
    damaged_heic = tmp / "IMG_0001.HEIC"
    damaged_heic.write_bytes(frobisher_heic()[1][:2000])
    out = str(tmp / "o.exr")
    return {
        "one frame": ["enhance", FRAMES[0], "-o", out],
        "missing file": ["enhance", FRAMES[0], str(tmp / "nope.jpg"), "-o", out],
        "not an image": ["enhance", FRAMES[0], str(text), "-o", out],
        "truncated": ["enhance", FRAMES[0], str(truncated), "-o", out],
        "empty": ["enhance", FRAMES[0], str(empty), "-o", out],
        "size mismatch": ["enhance", FRAMES[0], str(small), "-o", out],
        "exposure count": ["enhance", *FRAMES, "-o", out, "--exposures", "1", "2"],
        "negative exposure": ["enhance", *FRAMES, "-o", out, "--exposures", "1", "-2", "3"],
        "nan exposure": ["enhance", *FRAMES, "-o", out, "--exposures", "1", "nan", "3"],
        "unknown model": ["enhance", *FRAMES, "-o", out, "--model", "nope"],
        "unknown extension": ["enhance", *FRAMES, "-o", str(tmp / "o.bmp")],
        "missing output dir": ["enhance", *FRAMES, "-o", str(tmp / "no" / "o.exr")],
        "reference out of range": ["enhance", *FRAMES, "-o", out, "--reference", "3"],
        "bad reference": ["enhance", *FRAMES, "-o", out, "--reference", "middle"],
        "too large": ["enhance", *FRAMES, "-o", out, "--max-megapixels", "0.01"],
        "gain map on png": ["enhance", *FRAMES, "-o", str(tmp / "o.png"), "--gain-map"],
        "headroom below 1": ["enhance", *FRAMES, "-o", str(tmp / "o.avif"), "--hdr-headroom", "0.5"],
        "damaged heic": ["enhance", FRAMES[0], str(damaged_heic), "-o", out],
        "cuda absent": ["enhance", *FRAMES, "-o", out, "--device", "cuda:7"],
    }


def test_bad_inputs_exit_2_with_one_line(tmp_path: Path) -> None:
    """Every bad input exits 2 with a single error line (last on stderr) and no traceback."""
    for case, args in _bad_inputs(tmp_path).items():
        result = run_cli(*args)
        assert result.returncode == 2, f"{case}: exit {result.returncode}\n{result.stderr}"
        lines = result.stderr.strip().splitlines()
        errors = [ln for ln in lines if "error:" in ln]
        assert len(errors) == 1, f"{case}: {result.stderr}"
        assert lines[-1] == errors[0], f"{case}: {result.stderr}"
        assert "Traceback" not in result.stderr, f"{case}: {result.stderr}"


def test_dng_bracket_to_every_format(tmp_path: Path) -> None:
    """A triplet of DNGs (written by the test) merges to EXR, Radiance, TIFF and PNG."""
    from helpers.dng import write_dng

    rng = np.random.default_rng(0)
    scene = rng.uniform(0.002, 4.0, (64, 96)).astype(np.float32)
    frames = []
    for i, t in enumerate((0.25, 1.0, 4.0)):
        mosaic = np.clip(scene * t, 0, 1) * (4095 - 256) + 256
        path = tmp_path / f"f{i}.dng"
        write_dng(path, mosaic.astype(np.uint16), pattern="RGGB", black=256, white=4095, exposure_time=t)
        frames.append(str(path))
    for ext in (".exr", ".hdr", ".tif", ".png"):
        out = tmp_path / f"raw{ext}"
        assert main(["-q", "enhance", *frames, "-o", str(out)]) == 0
        open_with_opencv(out)


@pytest.mark.shared_data
@pytest.mark.skipif(not SHARED.exists(), reason="../shared/data is not present")
@pytest.mark.parametrize(
    ("folder", "names", "exposures"),
    [
        ("frobisher", ["IMG_2600.jpg", "IMG_2601.jpg", "IMG_2602.jpg"], None),
        ("desktop", ["DSC_0104.png", "DSC_0108.png", "DSC_0112.png"], ["32", "2", "1/8"]),
        ("scene2", ["SAM_0030.JPG", "SAM_0024.JPG", "SAM_0018.JPG"], None),
    ],
)
def test_shared_brackets(tmp_path: Path, folder: str, names: list[str], exposures: list[str] | None) -> None:
    """The real development brackets merge to EXR with times from EXIF or from the command line."""
    args = ["-q", "enhance", *(str(SHARED / folder / n) for n in names), "-o", str(tmp_path / "m.exr")]
    if exposures:
        args += ["--exposures", *exposures]
    assert main(args) == 0
    hdr = read_image(tmp_path / "m.exr").data
    assert np.isfinite(hdr).all() and hdr.max() > 1.5
