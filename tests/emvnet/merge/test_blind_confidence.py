"""Blind brackets say how far their exposure ratios can be trusted (`blind_confidence`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers.synth import ldr_bracket, radiance_scene

from emvnet.evaluation.evaluate import without_exposure_times as _blind
from emvnet.io import read_image
from emvnet.merge.bracket import blind_confidence, make_bracket

TIMES = [0.25, 1.0, 4.0]


def test_a_whole_stop_power_law_bracket_reads_right_and_says_high() -> None:
    frames = _blind(ldr_bracket(radiance_scene(160, 224, seed=8), TIMES, noise=0.003, seed=4))
    bracket = make_bracket(frames)
    np.testing.assert_allclose(bracket.ratios, [0.25, 1.0, 4.0], rtol=1e-6)
    assert bracket.confidence == "high"


def test_a_shouldered_curve_says_low_whatever_it_reads() -> None:
    """A shoulder trades off against longer steps: such a reading is never presented as certain."""
    frames = _blind(ldr_bracket(radiance_scene(160, 224, seed=9), TIMES, shoulder=1.3, seed=5))
    assert make_bracket(frames).confidence == "low"


def test_known_times_carry_no_blind_confidence() -> None:
    frames = ldr_bracket(radiance_scene(64, 96, seed=1), TIMES)
    assert make_bracket(frames).confidence is None


def test_off_grid_or_unread_ratios_are_low() -> None:
    frames = _blind(ldr_bracket(radiance_scene(64, 96, seed=2), TIMES))
    assert blind_confidence(frames, None, None, 0.0) == "low"
    assert blind_confidence(frames, [0.25, 1.0, 4.0], "thirds", 0.0) == "low"
    assert blind_confidence(frames, [0.25, 1.0, 4.0], "whole stops", 0.5) == "low"
    assert blind_confidence(frames, [0.25, 1.0, 4.0], "whole stops", 0.0) == "high"
    assert blind_confidence(frames, [0.06, 1.0, 16.0], "whole stops", 0.0) == "low"  # steps 2 stops off


GARDEN = Path(__file__).resolve().parents[4] / "shared" / "data" / "brackets" / "motion_sculpture_garden"


@pytest.mark.shared_data
@pytest.mark.skipif(not GARDEN.is_dir(), reason="../shared/data is not present")
def test_a_shape_that_reads_no_grid_is_dropped_and_the_steps_read_as_a_power_law() -> None:
    """The sculpture garden's 1/320, 1/80, 1/20 s frames: the fitted shoulder finds no grid, and
    read again through a plain power law the steps land on whole stops, exactly."""
    frames = _blind([read_image(GARDEN / f"{i}.tif") for i in (1, 3, 5)])
    bracket = make_bracket(frames, reference=1)
    np.testing.assert_allclose(np.log2(bracket.ratios), [-2.0, 0.0, 2.0], atol=1e-6)
