"""The known-time response fit (`fit_response`): one curve model for short brackets, read alike
from a bracket and from a resized or re-encoded copy, and a plain power law where that is what the
frames are, motion or not."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from helpers.brackets import FROBISHER
from helpers.synth import ldr_bracket, radiance_scene

from emvnet.frame import Frame
from emvnet.io import read_image
from emvnet.io.tonemap import ENCODING_GAMMA
from emvnet.merge.bracket import fit_response, make_bracket, response_misfits

TIMES = [0.25, 1.0, 4.0]


def _moved(frames: list[Frame], shift: int) -> list[Frame]:
    """Each frame shifted by `shift` px more than the last (camera motion) and a block of the scene
    moved in the middle frame (a subject), as a handheld bracket would be."""
    out = []
    for i, f in enumerate(frames):
        data = np.roll(f.data, shift * i, axis=1)
        if i == 1:
            data = data.copy()
            data[20:60, 30:80] = data[40:80, 60:110]
        out.append(Frame(data, f.domain, f.layout, f.source_format, f.bit_depth, exposure=f.exposure))
    return out


@pytest.mark.parametrize("shift", [0, 6])
def test_a_plain_gamma_22_bracket_reads_as_a_plain_power_law(shift: int) -> None:
    """Frames encoded with a plain gamma 2.2 and known times read as a power law within 0.1 of
    2.2, with camera and subject motion between the frames."""
    frames = _moved(ldr_bracket(radiance_scene(160, 224, seed=4), TIMES, noise=0.004, seed=2), shift)
    shape, gamma = fit_response(frames, TIMES)
    assert shape == 0 and abs(gamma - 2.2) <= 0.1, (shape, gamma)
    assert make_bracket(frames, TIMES).crf_gamma == pytest.approx(gamma)


@pytest.mark.parametrize("true_gamma", [1.8, 2.6])
def test_another_gamma_is_read_from_the_stated_steps(true_gamma: float) -> None:
    """With the times known, a steeper or flatter power law shows in every step: it is read."""
    frames = ldr_bracket(radiance_scene(160, 224, seed=5), TIMES, gamma=true_gamma, seed=3)
    shape, gamma = fit_response(frames, TIMES)
    assert shape == 0 and abs(gamma - true_gamma) <= 0.1, (shape, gamma)


def test_a_shoulder_is_found_and_explains_the_steps_better_than_any_power_law() -> None:
    frames = ldr_bracket(radiance_scene(160, 224, seed=6), TIMES, shoulder=1.0, seed=1)
    shape, _ = fit_response(frames, TIMES)
    misfits = response_misfits(frames, TIMES)
    assert shape != 0, misfits
    assert min(misfits[k] for k in misfits if k[0] == shape) < 0.5 * min(
        misfits[k] for k in misfits if k[0] == 0
    )


def test_a_resized_and_reencoded_bracket_reads_the_curve_of_its_source() -> None:
    """The bundled bracket, and a copy at 60 % size re-encoded as JPEG at quality 80, read one
    curve: the reading must not change with a resize (the demo's rainbow rings came from that)."""
    frames = [read_image(p) for p in FROBISHER]
    times = [f.exposure.exposure_time for f in frames]
    assert all(t is not None for t in times)

    def copy(f: Frame) -> Frame:
        small = cv2.resize(f.data, None, fx=0.6, fy=0.6, interpolation=cv2.INTER_AREA)
        ok, buf = cv2.imencode(
            ".jpg", np.round(small[..., ::-1] * 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 80]
        )
        assert ok
        data = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1].astype(np.float32) / 255
        return Frame(np.ascontiguousarray(data), "display", "rgb", "jpeg", 8, exposure=f.exposure)

    source = fit_response(frames, times)  # type: ignore[arg-type]
    resized = fit_response([copy(f) for f in frames], times)  # type: ignore[arg-type]
    assert source[0] == resized[0] and abs(source[1] - resized[1]) <= 0.1, (source, resized)


def test_frames_with_nothing_to_compare_keep_gamma_22() -> None:
    flat = [Frame(np.full((32, 32, 3), v, np.float32), "display", "rgb", "png", 8) for v in (0.0, 1.0)]
    assert fit_response(flat, [1.0, 4.0]) == (0.0, ENCODING_GAMMA)
