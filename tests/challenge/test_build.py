"""The challenge generator draws the same study from the same recipe, and its truth matches
what it drew (issue 19: the set is frozen by its recipes, so they must reproduce)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from challenge.build import build_study, load_recipes
from challenge.slicing import slab_weights

RECIPE = {
    "name": "unit", "source": "synthetic", "sequences": ["T1", "STIR"], "thickness": 3.5, "gap": 1.0,
    "seed": 4242,
    "lesion": [{"level": "L2", "shape": "irregular", "contrast": 0.8, "extension": "paravertebral",
                "extension_mm": 8.0, "side": "anterior"}],
}


def test_same_recipe_same_study() -> None:
    a = build_study(RECIPE, Path("/nonexistent"))
    b = build_study(RECIPE, Path("/nonexistent"))
    for sa, sb in zip(a.series, b.series, strict=True):
        assert np.array_equal(sa.pixels, sb.pixels)
    assert a.labels is not None and b.labels is not None
    assert np.array_equal(np.asarray(a.labels.array), np.asarray(b.labels.array))
    l2 = a.truth["L2"]
    assert l2.suspicious and not l2.epidural
    assert l2.extension_mm == pytest.approx(8.0, abs=0.6)
    assert not any(t.suspicious for lv, t in a.truth.items() if lv != "L2")
    assert a.series[0].slice_thickness == 3.5 and a.series[0].slice_spacing == 4.5


def test_slabs_cover_their_thickness_and_leave_the_gaps() -> None:
    weights, centres = slab_weights(50, 4.0, 1.0)
    assert np.allclose(weights.sum(axis=1), 1.0)
    assert np.allclose(np.diff(centres), 5, atol=1)
    assert ((weights > 0).sum(axis=1) <= 5).all()  # 4 mm over 1 mm planes: at most 5 touched


def test_frozen_set_is_the_committed_one() -> None:
    header, studies = load_recipes()
    assert header["seed"] == 19019 and len(studies) == 32
    assert len({s["name"] for s in studies}) == 32


@pytest.mark.parametrize("which", ["a", "b"])
def test_each_frozen_file_is_what_its_seed_draws(which: str, capsys: pytest.CaptureFixture[str]) -> None:
    from challenge.build import FROZEN_SETS
    from challenge.draw import main

    assert main([which]) == 0
    assert capsys.readouterr().out == FROZEN_SETS[which].read_text(encoding="utf-8")
    header, studies = load_recipes(FROZEN_SETS[which])
    assert len({s["name"] for s in studies}) == len(studies)
    assert header["seed"] == {"a": 19019, "b": 19020}[which]


def test_the_two_sets_share_no_study_seed() -> None:
    from challenge.build import FROZEN_SETS

    seeds = [{int(s["seed"]) for s in load_recipes(path)[1]} for path in FROZEN_SETS.values()]
    assert not seeds[0] & seeds[1]
