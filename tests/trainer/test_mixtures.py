"""Mixture kinds and their parsing from sweep files."""

import math

import pytest

from trainer import mixtures as mx

LANGS = ["ama", "ami", "bel", "cai"]


def weights(spec, **kw):
    (m,) = mx.parse(spec, LANGS, "mix")
    return m, mx.resolve(m, budget=kw.get("budget", 1e6), unique=kw.get("unique", {}), available=kw.get("available", {}))


def test_simple_kinds():
    assert weights({"monolingual": "ama"})[1] == {"ama": 1.0}
    m, w = weights({"bilingual": ["ama", "bel"]})
    assert w == {"ama": 0.5, "bel": 0.5} and m.name == "bi:ama+bel"
    assert weights({"uniform": "all"})[1] == {l: 0.25 for l in LANGS}
    assert weights({"weights": {"ama": 3, "bel": 1}})[1] == {"ama": 0.75, "bel": 0.25}


def test_expansions():
    assert [m.name for m in mx.parse({"monolingual": "each"}, LANGS, "m")] == [f"mono:{l}" for l in LANGS]
    assert [m.langs for m in mx.parse({"bilingual": "ama", "with": "each"}, LANGS, "m")] == [("ama", l) for l in LANGS[1:]]
    assert len(mx.parse({"bilingual": "pairs", "langs": ["ama", "ami", "bel"]}, LANGS, "m")) == 3
    ks = mx.parse({"uniform": ["cai", "ama", "bel", "ami"], "k": [1, 2, 4]}, LANGS, "m")
    assert [m.langs for m in ks] == [("cai",), ("cai", "ama"), ("cai", "ama", "bel", "ami")]


def test_unimax_caps_epochs():
    U = {"ama": 1e4, "ami": 1e6, "bel": 1e6}
    _, w = weights({"unimax": ["ama", "ami", "bel"], "max_epochs": 4}, unique=U, budget=3e5)
    assert w["ama"] * 3e5 == pytest.approx(4e4)  # capped at 4 epochs of its 1e4 tokens
    assert w["ami"] == pytest.approx(w["bel"]) and sum(w.values()) == pytest.approx(1.0)
    with pytest.raises(ValueError, match=r"max_epochs=4 x U gives at most 1.2e\+05 tokens, less than the budget D=3e\+05"):
        weights({"unimax": ["ama"], "max_epochs": 4}, unique={"ama": 3e4}, budget=3e5)


def test_temperature():
    _, w = weights({"temperature": ["ama", "bel"], "tau": 2.0, "sizes": {"ama": 100.0, "bel": 400.0}})
    assert w["bel"] / w["ama"] == pytest.approx(2.0)  # (400/100) ** (1/2)
    _, w = weights({"temperature": ["ama", "bel"], "tau": 1.0}, unique={"ama": 1e3, "bel": math.inf},
                   available={"bel": 3e3})
    assert w["bel"] == pytest.approx(0.75)
    with pytest.raises(ValueError, match=r"temperature sampling needs a finite positive size"):
        weights({"temperature": ["ama", "bel"]}, available={"ama": math.inf, "bel": math.inf})


@pytest.mark.parametrize(
    "spec, match",
    [
        ({"monolingual": "xx"}, r"mix: unknown language 'xx'; the data has ama, ami, bel, cai"),
        ({"bilingual": ["ama"]}, r"bilingual needs exactly two languages"),
        ({"bilingual": ["ama", "ama"]}, r"language 'ama' listed twice"),
        ({"uniform": "all", "k": [9]}, r"k must be integers in 1\.\.4"),
        ({"monolingual": "ama", "bilingual": ["ama", "bel"]}, r"exactly one of the keys"),
        ({"uniform": "all", "tau": 1}, r"unknown key 'tau' in mix"),
        ({"weights": {"ama": -1, "bel": 1}}, r"weights must be finite, >= 0 and not all 0"),
    ],
)
def test_bad_mixtures(spec, match):
    with pytest.raises(ValueError, match=match):
        weights(spec)
