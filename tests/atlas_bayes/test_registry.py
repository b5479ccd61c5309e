"""The bridge from run cubes to law inputs: which observations, which inputs, which errors."""

import math

import jax
import numpy as np
import pytest

from atlas_bayes import cube as cube_lib
from atlas_bayes import registry, simulate

MIXTURES = [{"en": 1.0}, {"fr": 1.0}, {"en": 0.5, "fr": 0.5}, {"en": 0.2, "fr": 0.2, "de": 0.2, "sw": 0.2, "hi": 0.2}]


def _cube():
    runs = simulate.grid(N=[1e7, 1e8], D=[1e9, 1e10], mixtures=MIXTURES, U={"sw": 1e8})
    return simulate.simulate_cube("chinchilla", simulate.PAPER["chinchilla"], runs, key=jax.random.key(0), targets=["en", "fr"])


def test_every_law_declares_spec_parameter_names_and_bounds():
    spec_names = {"E", "A", "B", "alpha", "beta", "lam", "tau_other", "R_D_star", "R_N_star", "gamma", "L_inf", "phi", "psi"}
    for law in registry.LAWS.values():
        for p in law.params:
            assert p.name in spec_names, (law.name, p.name)
            assert p.lower < p.upper and p.transform in ("log", "identity")
            assert all(p.lower <= s <= p.upper for s in p.starts)
            assert p.transform == "identity" or p.lower >= 0  # log-space parameters are positive
        assert set(law.needs) <= {"N", "D", "U", "mix"}
    assert registry.get_law("atlas").param_names(("fr", "de"))[-2:] == ("tau_fr", "tau_de")


def test_design_keeps_runs_that_train_on_the_target():
    cube = _cube()
    d = registry.design(cube, "atlas", target="fr")
    # fr is trained on in 3 of 4 mixtures x 4 (N, D) cells; the 4 en-only runs are left out and counted
    assert len(d.loss) == 12 and d.excluded == 4
    assert d.sources == ("en", "de", "hi")  # en twice, then de/hi/sw once each, tie broken by weight then name
    np.testing.assert_allclose(d.x["D_t"], np.asarray(d.x["D"]) * d.x["p"])
    # D_other = the sampled languages outside K_t (sw here), with sw's unique budget
    has_other = d.x["D_other"] > 0
    np.testing.assert_allclose(d.x["D_other"][has_other], 0.2 * d.x["D"][has_other])
    assert np.all(d.x["U_other"][has_other] == 1e8)
    chin = registry.design(cube, "chinchilla", target="en")
    assert len(chin.loss) == 16 and chin.excluded == 0  # chinchilla uses total D: every evaluated run counts


def test_inputs_match_design_for_the_same_configuration():
    cube = _cube()
    d = registry.design(cube, "atlas", target="fr")
    fin = cube_lib.final(cube)
    i = list(fin["run"].values).index(d.run[0])
    x = registry.inputs("atlas", N=fin["N"].values[[i]], D=fin["D"].values[[i]], mix=fin["mix"].values[[i]],
                        U=fin["U"].values[[i]], srcs=list(fin["src"].values), target="fr", sources=d.sources)
    for k, v in x.items():
        np.testing.assert_allclose(v[0], d.x[k][0], err_msg=k)


def test_design_errors_name_what_is_missing():
    cube = _cube()
    with pytest.raises(ValueError, match=r"choose one with --target from \['en', 'fr'\]"):
        registry.design(cube, "chinchilla")
    with pytest.raises(ValueError, match=r"unknown target 'xx'; the cube's evaluation languages are \['en', 'fr'\]"):
        registry.design(cube, "chinchilla", target="xx")
    with pytest.raises(ValueError, match="law 'dcsl' needs the unique-token budget U of 'fr'"):
        registry.design(cube, "dcsl", target="fr")
    mono = simulate.simulate_cube("chinchilla", simulate.PAPER["chinchilla"], simulate.grid(N=[1e7, 1e8], D=[1e9, 1e10]),
                                  key=jax.random.key(0))
    with pytest.raises(ValueError, match="needs multilingual mixtures .mix.: every run of target 'xx' trains on 'xx' alone"):
        registry.design(mono, "atlas")
    with pytest.raises(ValueError, match="law 'curse' needs runs with different numbers of training languages K"):
        registry.design(mono, "curse")


def test_step_observations():
    cube = _cube()
    steps = cube_lib.make_cube(
        loss=np.stack([cube["loss"].values * 1.1, cube["loss"].values], axis=-1),
        N=cube["N"].values, D=cube["D"].values[:, None] * np.array([0.5, 1.0]), mix=cube["mix"].values,
        U=cube["U"].values, lang=cube_lib.languages(cube), src=list(cube["src"].values),
    )
    final = registry.design(steps, "chinchilla", target="en")
    every = registry.design(steps, "chinchilla", target="en", use_steps=True)
    assert len(every.loss) == 2 * len(final.loss)
    assert math.isclose(float(final.x["D"].max()), 1e10)
