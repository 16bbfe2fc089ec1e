"""RGB primaries: a file's stated chromaticities convert to Rec.709, white stays white."""

from __future__ import annotations

import numpy as np
import pytest

from emvnet.io.primaries import REC709, to_rec709_matrix

AP0 = (0.7347, 0.2653, 0.0, 1.0, 0.0001, -0.077, 0.32168, 0.33767)  # ACES 2065-1, D60 white


def test_aces_ap0_converts_as_published() -> None:
    """AP0 -> Rec.709 (Bradford D60 -> D65) is the published matrix; neutral stays neutral."""
    matrix = to_rec709_matrix(AP0)
    assert matrix is not None
    published = [[2.52169, -1.13413, -0.38756], [-0.27648, 1.37272, -0.09624], [-0.01538, -0.15298, 1.16835]]
    np.testing.assert_allclose(matrix, published, atol=1e-4)
    np.testing.assert_allclose(matrix @ np.ones(3), np.ones(3), atol=1e-5)


def test_rec709_needs_no_conversion_and_bad_sets_are_refused() -> None:
    """Rec.709 (as float32 in a file) is left alone; a wrong count or a y = 0 primary is an error."""
    assert to_rec709_matrix(tuple(float(np.float32(v)) for v in REC709)) is None
    with pytest.raises(ValueError, match="8 numbers"):
        to_rec709_matrix(REC709[:6])
    with pytest.raises(ValueError, match="y = 0"):
        to_rec709_matrix((0.7, 0.0, *REC709[2:]))
