"""Splits of the paper's protocol: what each holds out, and errors naming what the cube lacks."""

import jax
import numpy as np
import pytest
from compare_cubes import ATLAS, MIXTURES, atlas_cube, chinchilla_cube

from atlas_bayes import cube as cube_lib
from atlas_bayes import simulate, splits


def test_random_split_holds_out_a_share_of_configurations_with_their_seeds():
    cube = chinchilla_cube(seeds=2)
    pts = splits.points(cube, ["xx"])
    held = splits.split_mask(pts, "random", holdout=0.2, seed=3)
    assert held.sum() == 2 * round(0.2 * 16)  # 3 of 16 configurations, both seeds of each
    for c in np.unique(pts.config):
        assert len(set(held[pts.config == c])) == 1  # a configuration's seeds are never split
    assert not np.array_equal(held, splits.split_mask(pts, "random", holdout=0.2, seed=4))
    np.testing.assert_array_equal(held, splits.split_mask(pts, "random", holdout=0.2, seed=3))


@pytest.mark.parametrize("split", ["N", "D", "C"])
def test_scale_splits_hold_out_the_largest_values(split):
    pts = splits.points(chinchilla_cube(), ["xx"])
    held = splits.split_mask(pts, split, holdout=0.2)
    values = getattr(pts, split)
    assert values[held].min() > values[~held].max() * (1 - 1e-12)  # every held-out value above every training one
    assert len(np.unique(values[~held])) >= 2
    if split in ("N", "D"):
        assert held.mean() == 0.25  # one of four sizes: the share nearest 20%


def test_mixture_split_holds_out_other_mixtures_but_not_unimax_and_finetunes_are_left_out():
    cube = atlas_cube()
    pts = splits.points(cube, ["en"])
    held = splits.split_mask(pts, "M")
    fin = cube_lib.final(cube)
    names = dict(zip([str(r) for r in fin["run"].values], [str(m) for m in fin["mixture"].values]))
    assert {names[r] for r in pts.run[held]} == {"uniform:en+fr+sw"}
    # without names a Unimax run cannot be told apart: every run on 3+ languages is held out
    unnamed = splits.points(cube.drop_vars("mixture"), ["en"])
    assert splits.split_mask(unnamed, "M").sum() == 32
    ft = cube.assign(kind=("run", np.where(np.arange(cube.sizes["run"]) < 5, "finetune", "pretrain").astype(object)),
                     base=("run", np.full(cube.sizes["run"], "", dtype=object)))
    assert len(splits.points(ft, ["en"]).loss) == 75


def test_split_errors_name_the_split_and_what_the_cube_lacks():
    two_sizes = splits.points(chinchilla_cube(N=(1e7, 3e7)), ["xx"])
    with pytest.raises(ValueError, match=r"split 'N' holds out the largest model sizes N, but target 'xx' has 2 distinct model sizes"):
        splits.split_mask(two_sizes, "N")
    mono = splits.points(chinchilla_cube(), ["xx"])
    with pytest.raises(ValueError, match=r"split 'M' .*no run of it trains on 3 or more languages"):
        splits.split_mask(mono, "M")
    runs = simulate.grid(N=[1e7, 3e7, 1e8], D=[1e9, 3e9, 1e10], mixtures=[MIXTURES["uniform:en+fr+sw"]])
    only_multi = simulate.simulate_cube("atlas", ATLAS, runs, key=jax.random.key(0), targets=["en"])
    with pytest.raises(ValueError, match=r"split 'M' .*that is every run: nothing is left to fit on"):
        splits.split_mask(splits.points(only_multi, ["en"]), "M")
    one = splits.points(chinchilla_cube(N=(1e7,), D=(1e9,)), ["xx"])
    with pytest.raises(ValueError, match=r"split 'random' .*a single configuration"):
        splits.split_mask(one, "random")
    with pytest.raises(ValueError, match=r"unknown split 'T'; valid splits: random, N, D, C, M"):
        splits.split_mask(mono, "T")
    with pytest.raises(ValueError, match=r"holdout must be a share between 0 and 1"):
        splits.split_mask(mono, "D", holdout=1.5)
