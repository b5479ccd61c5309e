"""``atlas demo``: every step runs on the tiny sweep and the report names what it found."""

import json

import numpy as np
import pytest

from atlas_bayes import cube as cube_lib
from atlas_bayes.cli import demo, main


def test_monolingual_step_names_the_runs_to_add():
    # a cube with two monolingual runs of ama is too few for the Chinchilla fit: the error says so
    from atlas_bayes import simulate
    import jax

    runs = simulate.grid(N=[1e7, 3e7], D=[1e9])
    cube = simulate.simulate_cube("chinchilla", simulate.PAPER["chinchilla_refit"], runs, key=jax.random.key(0))
    cube = cube.assign_coords(lang=["ama"], src=["ama"])
    with pytest.raises(ValueError, match="at least 4 monolingual.*'ama'.*has 2"):
        demo._monolingual(cube, "ama")
    with pytest.raises(ValueError, match="'fr' is not a training language"):
        demo._monolingual(cube, "fr")


def test_unknown_sweep_is_refused(tmp_path, capsys):
    assert main(["demo", "--sweep", "no_such_sweep", "--out", str(tmp_path)]) == 2
    assert "no_such_sweep" in capsys.readouterr().err


def test_bad_target_accept_is_refused_before_training(tmp_path, capsys):
    assert main(["demo", "--target-accept", "1.5", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "--target-accept must be between 0 and 1" in err and "got 1.5" in err
    assert not (tmp_path / "r" / "cube.nc").exists()


@pytest.mark.slow
def test_demo_tiny_end_to_end(tmp_path):
    # The whole demo on the smallest sweep: every step must run (none skipped) and write its figure.
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tiny fits have poor diagnostics; the demo reports them itself
        path = demo.run_demo(tmp_path, demo.DemoSettings(sweep="demo_tiny", workers=1, draws=60, warmup=60,
                                                         progress=False))
    text = path.read_text()
    for heading in ("Scaling-law fits", "Law comparison", "Bilingual transfer matrix", "Curse of multilinguality",
                    "Pretrain from scratch vs finetune", "Surrogate", "Timings"):
        assert f"## {heading}" in text, heading
    assert "Skipped" not in text
    for png in ("loss_vs_N_D.png", "transfer.png", "iso_loss.png", "crossover_ama.png", "surrogate_holdout.png"):
        assert (tmp_path / png).stat().st_size > 1000, png
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert 0 <= summary["surrogate"]["coverage90"] <= 1
    assert np.isfinite(summary["fits"]["ATLAS"]["params"]["alpha"]["estimate"])
    cube = cube_lib.load(tmp_path / "cube.nc")
    assert cube.sizes["run"] == 36
