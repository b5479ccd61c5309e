"""Features and the traceable mirror of registry.inputs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from atlas_bayes import registry
from surrogate import features


@pytest.mark.parametrize("law", sorted(registry.LAWS))
def test_law_inputs_match_the_registry(law):
    rng = np.random.default_rng(0)
    srcs = ["en", "fr", "de", "sw"]
    n = 7
    N, D = 10 ** rng.uniform(7, 9, n), 10 ** rng.uniform(9, 11, n)
    mix = rng.dirichlet(np.ones(4), n)
    mix[0] = [1, 0, 0, 0]  # monolingual: zeros in the other columns
    mix[1] = [0, 0.5, 0.5, 0]  # the target is not sampled
    U = np.where(rng.uniform(size=(n, 4)) < 0.5, np.inf, 10 ** rng.uniform(8, 10, (n, 4)))
    spec = registry.get_law(law)
    sources = ("fr", "de") if spec.transfer == "sources" else ()
    want = registry.inputs(spec, N=N, D=D, mix=mix, U=U, srcs=srcs, target="en", sources=sources)
    with jax.enable_x64(True):
        fn = jax.jit(lambda *a: features.law_inputs(spec, *a, srcs=srcs, target="en", sources=sources))
        got = fn(*(jnp.asarray(a) for a in (N, D, mix, U)))
        assert set(got) == set(want)
        for k in want:
            np.testing.assert_allclose(np.asarray(got[k]), want[k], rtol=1e-12, err_msg=k)  # same float64 sums


def test_features_are_standardised_and_constant_columns_dropped():
    rng = np.random.default_rng(0)
    n = 20
    N, D = 10 ** rng.uniform(7, 9, n), np.full(n, 1e10)  # D constant: dropped
    mix = rng.dirichlet(np.ones(2), n)
    U = np.c_[np.full(n, np.inf), np.full(n, 1e9)]  # fr repeats: an epochs feature
    with jax.enable_x64(True):
        spec = features.make_spec(N, D, mix, U, np.zeros(n), srcs=("en", "fr"))
        z = np.asarray(features.features(spec, N, D, mix, U, np.zeros(n)))
    assert spec.names == ("log_N", "log_w:en", "log_w:fr", "log1p_epochs:fr")
    np.testing.assert_allclose(z.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(z.std(axis=0), 1, rtol=1e-12)


def test_features_need_something_that_varies():
    with pytest.raises(ValueError, match="every training run has the same N, D, mixture and U"):
        features.make_spec(np.full(3, 1e8), np.full(3, 1e9), np.ones((3, 1)), np.full((3, 1), np.inf), np.zeros(3), srcs=("en",))


def test_feature_gradients_are_finite_at_zero_weights_and_infinite_U():
    spec = features.make_spec(np.array([1e7, 1e8]), np.array([1e9, 1e10]), np.array([[1.0, 0.0], [0.5, 0.5]]),
                              np.array([[np.inf, 1e8], [np.inf, 1e8]]), np.zeros(2), srcs=("en", "fr"))

    def total(w):
        mix = jnp.stack([w, 1 - w])[None]
        return jnp.sum(features.features(spec, jnp.array([3e7]), jnp.array([3e9]), mix, jnp.array([[jnp.inf, 1e8]]), jnp.zeros(1)))

    assert np.isfinite(float(jax.jit(jax.grad(total))(1.0)))


def test_mixture_key_pairs_equal_mixtures_only():
    mix = np.array([[0.5, 0.5, 0.0], [0.5, 0.0, 0.5], [0.0, 0.5, 0.5], [1.0, 0.0, 0.0], [0.499, 0.501, 0.0],
                    [1 / 3, 1 / 3, 1 / 3], [0.5, 0.5, 0.0]])
    for dtype in (jnp.float32, jnp.float64):
        with jax.enable_x64(dtype == jnp.float64):
            key = np.asarray(features.mixture_key(jnp.asarray(mix, dtype)))
        same = np.abs(key[:, None] - key[None, :]) < 1e-5  # the tolerance of surrogate.gp.MIX_KEY_TOL
        expected = np.all(mix[:, None, :] == mix[None, :, :], axis=-1)
        np.testing.assert_array_equal(same, expected)  # permutations and a 0.1% change are other mixtures
