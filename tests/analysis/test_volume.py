"""The volume's two axis orders: (i, j, k) for ITK's geometry, (k, j, i) for the array."""

from __future__ import annotations

import numpy as np

from analysis.volume import Volume


def test_shape_and_spacing_in_either_axis_order() -> None:
    vol = Volume(np.zeros((2, 3, 4), dtype=np.int16), spacing=(0.5, 0.7, 4.0))
    assert vol.shape_ijk == (4, 3, 2)
    assert vol.spacing_kji == (4.0, 0.7, 0.5)
