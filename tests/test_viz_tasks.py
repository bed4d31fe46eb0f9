"""Figures of task samples (bionn.viz.plot_visual_examples)."""

from __future__ import annotations

import pytest

import bionn.tasks
from bionn.tasks import VISUAL_TASKS
from bionn.viz import plot_visual_examples

SMALL = {"contour": {"size": 20}, "motion": {"size": 16, "frames": 4}, "maze": {"size": 11}}


@pytest.mark.parametrize("name", sorted(SMALL))
def test_plot_visual_examples_writes_a_png(tmp_path, name):
    batch = VISUAL_TASKS[name](6, generator=0, **SMALL[name])
    fig = plot_visual_examples(batch, tmp_path / f"{name}.png", n=6, ncols=3)
    assert len(fig.axes) == 6
    assert (tmp_path / f"{name}.png").read_bytes()[:4] == b"\x89PNG"


def test_plot_visual_examples_shows_at_most_the_batch():
    batch = VISUAL_TASKS["maze"](3, generator=0, size=11)
    assert len(plot_visual_examples(batch, n=8, ncols=4).axes) == 3


@pytest.mark.parametrize(("kw", "match"), [({"n": 0}, "n must be"), ({"ncols": True}, "ncols must be")])
def test_plot_visual_examples_rejects_bad_counts(kw, match):
    batch = VISUAL_TASKS["maze"](2, generator=0, size=11)
    with pytest.raises(ValueError, match=match):
        plot_visual_examples(batch, **kw)


def test_tasks_package_has_no_figures():
    assert not hasattr(bionn.tasks, "plot_visual_examples")
