"""Contract tests over the law registry: every law passes the same checks (STYLE 15)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from atlas_bayes import laws, registry, simulate

CURSE_PARAMS = simulate.PAPER["curse"]
BASE = simulate.PAPER["chinchilla_refit"]
PARAMS = {
    "chinchilla": BASE,
    "dcsl": simulate.PAPER["dcsl"],
    "msl": dict(BASE, gamma=0.1),
    "atlas_mono": dict(BASE, lam=0.065),
    "atlas_other": dict(BASE, lam=0.065, tau_other=0.2),
    "atlas": dict(BASE, lam=0.065, tau_other=0.2, tau_fr=0.3, tau_de=0.1),
    "curse": CURSE_PARAMS,
}
SOURCES = {"atlas": ("fr", "de")}
SRCS = ["en", "fr", "de", "sw"]


def _x(law, N, D, mix=(0.4, 0.3, 0.2, 0.1), U=(math.inf, 2e9, math.inf, 5e8)):
    N = np.atleast_1d(np.asarray(N, float))
    D = np.atleast_1d(np.asarray(D, float))
    n = max(len(N), len(D))
    return registry.inputs(
        law,
        N=np.broadcast_to(N, (n,)),
        D=np.broadcast_to(D, (n,)),
        mix=np.tile(mix, (n, 1)),
        U=np.tile(U, (n, 1)),
        srcs=SRCS,
        target="en",
        sources=SOURCES.get(law, ()),
    )


def test_every_registered_law_has_test_parameters():
    assert set(PARAMS) == set(registry.LAWS)
    for name, law in registry.LAWS.items():
        assert set(law.param_names(SOURCES.get(name, ()))) == set(PARAMS[name]), name


@pytest.mark.parametrize("name", sorted(registry.LAWS))
def test_finite_and_shaped(name):
    law = registry.get_law(name)
    N = np.geomspace(1e6, 1e10, 7)
    out = law.evaluate(_x(name, N, 1e10), PARAMS[name], SOURCES.get(name, ()))
    assert out.shape == (7,)
    assert np.all(np.isfinite(out)) and np.all(np.asarray(out) > 0)


@pytest.mark.parametrize("name", sorted(registry.LAWS))
def test_posterior_broadcasting(name):
    """Parameters of shape (draw, 1) against inputs (obs,) give (draw, obs)."""
    law = registry.get_law(name)
    params = {k: np.full((3, 1), v) for k, v in PARAMS[name].items()}
    out = law.evaluate(_x(name, np.geomspace(1e6, 1e9, 5), 1e10), params, SOURCES.get(name, ()))
    assert out.shape == (3, 5)


@pytest.mark.parametrize("name", sorted(registry.LAWS))
def test_non_increasing_in_N_and_D(name):
    law = registry.get_law(name)
    grid = np.geomspace(1e6, 1e12, 40)
    in_n = np.asarray(law.evaluate(_x(name, grid, 1e10), PARAMS[name], SOURCES.get(name, ())))
    in_d = np.asarray(law.evaluate(_x(name, 1e9, grid), PARAMS[name], SOURCES.get(name, ())))
    # float32 round-off on losses of order 1 is ~1e-7 relative
    assert np.all(np.diff(in_n) <= 1e-6), name
    assert np.all(np.diff(in_d) <= 1e-6), name


@pytest.mark.parametrize("name", ["chinchilla", "atlas_mono", "atlas_other", "atlas", "msl"])
def test_limit_is_irreducible_loss(name):
    """With N, D -> inf (no repetition) the loss tends to E (times p^-gamma for MSL)."""
    law = registry.get_law(name)
    x = _x(name, 1e30, 1e30, U=(math.inf,) * 4)
    out = float(law.evaluate(x, PARAMS[name], SOURCES.get(name, ()))[0])
    expected = PARAMS[name]["E"] * (0.4 ** -PARAMS[name]["gamma"] if name == "msl" else 1.0)
    assert out == pytest.approx(expected, rel=1e-4)  # float32; the power terms are ~1e-8 here


def test_curse_limit_and_k_dependence():
    p = CURSE_PARAMS
    assert float(laws.curse(4.0, jnp.inf, jnp.inf, **p)) == pytest.approx(p["L_inf"], rel=1e-6)
    # phi > 0: with unlimited data per language, more languages cost capacity ...
    assert float(laws.curse(8.0, 1e8, jnp.inf, **p)) > float(laws.curse(1.0, 1e8, jnp.inf, **p))
    # ... and psi < 0: with unlimited capacity, more languages help each language's data term
    assert float(laws.curse(8.0, jnp.inf, 1e9, **p)) < float(laws.curse(1.0, jnp.inf, 1e9, **p))


def test_data_limited_laws_saturate():
    """With U fixed and D -> inf, DCSL and ATLAS stay above their unconstrained value."""
    for name in ("dcsl", "atlas_mono"):
        law = registry.get_law(name)
        x_lim = _x(name, 1e9, 1e15, mix=(1, 0, 0, 0), U=(1e9, math.inf, math.inf, math.inf))
        x_free = _x(name, 1e9, 1e15, mix=(1, 0, 0, 0), U=(math.inf,) * 4)
        assert float(law.evaluate(x_lim, PARAMS[name])[0]) > float(law.evaluate(x_free, PARAMS[name])[0]) + 1e-3


class TestSaturation:
    def test_identity_below_u(self):
        d = jnp.array([1.0, 5.0, 10.0])
        np.testing.assert_allclose(laws.saturation(d, 10.0, lam=0.3), d)

    def test_continuous_with_slope_one_at_u(self):
        with jax.enable_x64(True):
            U, lam, h = 1e9, 0.2, 1e3
            left = laws.saturation(U - h, U, lam=lam)
            right = laws.saturation(U + h, U, lam=lam)
            at = laws.saturation(jnp.float64(U), U, lam=lam)
            assert float(right - at) / h == pytest.approx(1.0, rel=1e-5)  # f64, step 1e-6 of U
            assert float(at - left) / h == pytest.approx(1.0, rel=1e-9)
            slope = jax.grad(lambda d: laws.saturation(d, U, lam=lam))(jnp.float64(U) * (1 + 1e-12))
            assert float(slope) == pytest.approx(1.0, rel=1e-6)

    def test_tends_to_u_times_one_plus_inverse_lam(self):
        U, lam = 2e9, 0.25
        far = float(laws.saturation(U * 1e4, U, lam=lam))
        assert far == pytest.approx(U * (1 + 1 / lam), rel=1e-6)

    def test_matches_dcsl_data_term_with_lam_inverse_r_d_star(self):
        U, D, r = 1e9, 7e9, 15.39
        r_d = D / U - 1
        dcsl_term = U + U * r * (1 - math.exp(-r_d / r))  # Muennighoff et al. 2023, eq. 5
        assert float(laws.saturation(D, U, lam=1 / r)) == pytest.approx(dcsl_term, rel=1e-6)

    def test_unconstrained_gradient_is_finite(self):
        g = jax.grad(lambda lam: laws.saturation(1e9, jnp.inf, lam=lam))(0.1)
        assert np.isfinite(float(g)) and float(g) == 0.0


def test_dcsl_reproduces_published_values():
    """huggingface/datablations README: scaling_law(6.34e9, 242e9, 25e9) = 2.2256."""
    p = dict(E=math.exp(0.6254804), A=math.exp(6.255414), B=math.exp(7.3049974), alpha=0.3526596,
             beta=0.3526596, R_D_star=15.387756, R_N_star=5.309743)
    with jax.enable_x64(True):
        assert float(laws.dcsl(6.34e9, 242e9, 25e9, **p)) == pytest.approx(2.2256, abs=1e-4)
        assert float(laws.dcsl(8.67e9, 178e9, 25e9, **p)) == pytest.approx(2.2270, abs=1e-4)


def test_compute_optimal_is_the_isoflop_minimum():
    p = BASE
    C = 1e21
    n_opt, d_opt = laws.compute_optimal(C, A=p["A"], B=p["B"], alpha=p["alpha"], beta=p["beta"])
    assert float(6 * n_opt * d_opt) == pytest.approx(C, rel=1e-5)
    n = np.geomspace(float(n_opt) / 3, float(n_opt) * 3, 2001)
    loss = laws.chinchilla(n, C / (6 * n), **p)
    assert n[int(np.argmin(loss))] == pytest.approx(float(n_opt), rel=2e-3)  # grid spacing 1.1e-3


def test_curse_scaling_matches_the_papers_worked_examples():
    # Paper: 2K: D_tot x1.66, N x1.18; 4K: x2.74, x1.4; 8K: x4.54, x1.66; 16K: x7.52, x1.96.
    # alpha, beta implied by the paper's exponents N x r^0.243, D_tot x r^0.728 (SPEC, derived).
    alpha, beta = 0.11 / 0.243, 0.04 / 0.272
    for r, d_tot, n in [(2, 1.66, 1.18), (4, 2.74, 1.4), (8, 4.54, 1.66), (16, 7.52, 1.96)]:
        s = laws.curse_scaling(float(r), alpha=alpha, beta=beta, phi=0.11, psi=-0.04)
        assert float(s.D_tot) == pytest.approx(d_tot, abs=0.02)  # the paper rounds to 2 decimals
        assert float(s.N) == pytest.approx(n, abs=0.02)
        assert float(s.C) == pytest.approx(float(s.N * s.D_tot), rel=1e-6)


def test_effective_tokens_floor_keeps_strong_interference_finite():
    d = laws.effective_tokens(1e6, jnp.inf, lam=0.1, D_other=1e9, U_other=jnp.inf, tau_other=-0.9)
    assert float(d) == 1.0
    assert np.isfinite(float(laws.atlas(1e8, 1e6, jnp.inf, **PARAMS["atlas_mono"], D_other=1e9, U_other=jnp.inf, tau_other=-0.9)))


def test_unknown_law_lists_valid_ones():
    with pytest.raises(ValueError, match="unknown law 'kaplan'; valid laws: chinchilla, dcsl"):
        registry.get_law("kaplan")
