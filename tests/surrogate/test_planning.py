"""plan (the best run for a budget) and suggest (the next runs) on the shared emulator."""

import numpy as np
import pytest

import surrogate
from atlas_bayes import cube as cube_lib
from atlas_bayes import laws

C = 6 * 3e7 * 3e9  # a budget inside the trained sizes and token counts


@pytest.fixture(scope="module")
def planned(model):
    return surrogate.plan(model, compute=C, targets=["en", "fr"], languages=["en", "fr"])


def test_plan_respects_the_budget_and_matches_a_brute_force_grid(model, planned):
    p = planned
    assert abs(6 * p.N * p.D / C - 1) < 1e-12
    assert set(p.mix) <= {"en", "fr"} and abs(sum(p.mix.values()) - 1) < 1e-9
    lo, hi = np.log(p.N_range)
    # brute force over log N x w_en (w_fr = 1 - w_en), each target kept at its smallest measured share
    w_lo, w_hi = p.min_share.get("en", 0.0), 1 - p.min_share.get("fr", 0.0)
    logn, w = np.meshgrid(np.linspace(lo, hi, 81), np.linspace(w_lo, w_hi, 61), indexing="ij")
    N = np.exp(logn.ravel())
    mix = np.c_[w.ravel(), 1 - w.ravel(), np.zeros(N.size)]
    mean, var, noise = model.log_moments(N, C / 6 / N, mix, np.broadcast_to(model.default_U, mix.shape), np.zeros(N.size))
    grid = np.mean(np.exp(mean[:2] + (var[:2] + noise[:2]) / 2), axis=0)
    best = int(np.argmin(grid))
    # the optimiser is at least as good as the grid (whose cells are ~1% apart in N and in w) ...
    assert p.value <= grid[best] * (1 + 1e-4)
    # ... and lands in the same place (the valley is flat along it: a few grid cells of slack)
    assert abs(np.log(p.N) - np.log(N[best])) < 0.3 and abs(p.mix["en"] - mix[best, 0]) < 0.1
    # the reported interval is a new run's, around the objective
    assert p.average["lower"] < p.value < p.average["upper"]
    for v in p.loss.values():
        assert v["lower"] < v["mean"] < v["upper"]


def test_quantile_objective_is_risk_averse(model, planned):
    q = surrogate.plan(model, compute=C, targets=["en", "fr"], languages=["en", "fr"], objective="quantile", quantile=0.9)
    assert q.value > planned.value  # a 90% quantile lies above the mean for these small, near-normal sds
    assert abs(6 * q.N * q.D / C - 1) < 1e-12 and q.to_dict()["objective"] == "quantile"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(compute=1e30), r"compute 1e\+30 FLOPs is outside what the emulator can plan for: with N and D within 2x"),
        (dict(compute=-1.0), r"compute must be a positive number of FLOPs"),
        (dict(targets=["xx"]), r"unknown target 'xx'; the emulator predicts \['en', 'fr', 'sw'\]"),
        (dict(targets=None), r"give the target languages to plan for"),
        (dict(languages=["de"]), r"unknown training language 'de' for the mixture"),
        (dict(objective="median"), r"unknown objective 'median'; valid: mean, quantile"),
        (dict(quantile=1.0, objective="quantile"), r"quantile must be between 0 and 1"),
        (dict(U={"de": 1e9}), r"U names 'de', which the emulator never saw"),
    ],
)
def test_plan_errors(model, kwargs, match):
    with pytest.raises(ValueError, match=match):
        surrogate.plan(model, **(dict(compute=C, targets=["en", "fr"]) | kwargs))


def test_suggest_prefers_an_uninformed_run_to_a_duplicate(model, planned, split):
    train = split[0]
    # dense: repeat the training run nearest the plan; uninformed: the planned configuration itself
    dist = np.abs(np.log(train["N"].values / planned.N)) + np.abs(np.log(train["D"].values / planned.D))
    near = int(np.argmin(dist + 10 * np.abs(train["mix"].values - [planned.mix.get(s, 0) for s in model.srcs]).sum(1)))
    w = np.array([planned.mix.get(s, 0.0) for s in model.srcs])
    cands = {"N": np.array([train["N"].values[near], planned.N]), "D": np.array([train["D"].values[near], planned.D]),
             "mix": np.stack([train["mix"].values[near], w])}
    s = surrogate.suggest(model, n=2, compute=C, targets=["en", "fr"], languages=["en", "fr"], candidates=cands)
    assert s.runs[0]["N"] == planned.N  # the uninformed run first
    assert s.runs[0]["variance_reduction"] > s.runs[1]["variance_reduction"]
    assert s.current_sd > s.runs[-1]["remaining_sd"] > 0


def test_suggest_random_candidates(model):
    s = surrogate.suggest(model, n=3, compute=C, targets=["en", "fr"], n_candidates=48, draws=64, fantasies=16)
    assert len(s.runs) == 3 and len({(r["N"], r["D"]) for r in s.runs}) == 3  # greedy picks differ
    limit = float(np.max(6 * model.train["N"] * model.train["D"]))
    assert all(r["compute"] <= limit * (1 + 1e-9) and r["kind"] == "pretrain" for r in s.runs)
    d = s.to_dict()
    assert d["decision"] == "optimum" and "plan" in d["context"] and d["current_sd"] > 0


def test_suggest_errors(model, split):
    with pytest.raises(ValueError, match=r"decision 'optimum' needs the budget: give --compute"):
        surrogate.suggest(model, targets=["en"])
    with pytest.raises(ValueError, match=r"decision 'crossover' needs both pretrain and finetune runs"):
        surrogate.suggest(model, decision="crossover", targets=["fr"], N=3e7)
    with pytest.raises(ValueError, match=r"unknown decision 'argmin'; valid: optimum, crossover"):
        surrogate.suggest(model, decision="argmin", targets=["fr"])
    with pytest.raises(ValueError, match=r"n must be a positive number of runs; got 0"):
        surrogate.suggest(model, n=0, compute=C, targets=["fr"])


def test_suggest_crossover_of_scratch_and_finetune():
    """Finetuning from a base starts ahead (as if it had seen 2e9 more tokens) but plateaus 3% higher."""
    N, D = np.meshgrid([1e7, 3e7], np.geomspace(1e9, 3e10, 6), indexing="ij")
    N, D = np.tile(N.ravel(), 2), np.tile(D.ravel(), 2)
    ft = np.repeat([0, 1], 12)
    p = dict(E=1.8, A=400.0, B=2000.0, alpha=0.34, beta=0.36)
    loss = np.asarray(laws.chinchilla(N, D + ft * 2e9, **p)) * (1 + 0.03 * ft)
    loss = loss * np.exp(0.003 * np.random.default_rng(0).standard_normal(24))
    cube = cube_lib.make_cube(loss=loss[:, None], N=N, D=D, lang=["fr"], kind=np.where(ft, "finetune", "pretrain"))
    m = surrogate.emulate(cube, steps=60, starts=1)
    assert m.spec.names[-1] == "finetune"
    s = surrogate.suggest(m, n=2, decision="crossover", targets=["fr"], N=2e7, n_candidates=32, draws=64, fantasies=16)
    assert len(s.runs) == 2 and s.current_sd > 0 and s.context["target"] == "fr"
    assert {r["mix"]["fr"] for r in s.runs} == {1.0}
