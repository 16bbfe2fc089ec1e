"""Blind brackets say how far their exposure ratios can be trusted (`blind_confidence`)."""

from __future__ import annotations

import numpy as np
from helpers.synth import ldr_bracket, radiance_scene

from emvnet.evaluation.evaluate import without_exposure_times as _blind
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
