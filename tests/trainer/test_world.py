"""The synthetic world: deterministic, with real and graded relatedness, several scripts, a config format."""

import itertools

import numpy as np
import pytest

from trainer import world as world_lib
from trainer.config import SEP

WORLD = world_lib.load_world("default")


def text(w, lang, n=40_000, split="train"):
    t = w.tokens(lang, n, split=split)
    return bytes(t[t != SEP].astype(np.uint8)).decode("utf-8", errors="ignore")


def ngrams(s, n=4):
    b = s.encode("utf-8")
    return {b[i:i + n] for i in range(len(b) - n)}


def jaccard(a, b):
    return len(a & b) / len(a | b)


def test_default_world_shape():
    meta = WORLD.metadata()
    assert 8 <= len(meta) <= 12
    assert len({m["family"] for m in meta.values()}) >= 3
    assert len({m["script"] for m in meta.values()}) >= 3 and "Hani" in {m["script"] for m in meta.values()}
    rel = WORLD.relatedness()
    d = np.array(rel["tree_distance"])
    assert rel["langs"] == list(WORLD.langs) and d.shape == (10, 10)
    np.testing.assert_array_equal(d, d.T)
    assert np.all(np.diag(d) == 0) and d[0, 1] < d[0, 2] < d[0, 4]  # sister < cousin < other family
    assert np.array(rel["shared_script"])[0, 1] == 1 and np.array(rel["shared_script"])[0, 3] == 0


def test_deterministic_from_seed_and_prefix_stable():
    again = world_lib.load_world("default")
    np.testing.assert_array_equal(WORLD.tokens("ama", 5000), again.tokens("ama", 5000))
    np.testing.assert_array_equal(WORLD.tokens("ama", 3000), again.tokens("ama", 9000)[:3000])  # U=3000 is a prefix
    other = world_lib.load_world("default", seed=1)
    assert not np.array_equal(WORLD.tokens("ama", 5000), other.tokens("ama", 5000))
    # languages do not depend on which others the world has
    sub = world_lib.World(world_lib.WorldConfig(languages=world_lib.DEFAULT_LANGUAGES[:2]))
    np.testing.assert_array_equal(sub.tokens("ami", 2000), WORLD.tokens("ami", 2000))


def test_test_text_is_disjoint_from_training_text():
    train_docs = set(WORLD.documents("bel", split="train", chunk=0))
    test_docs = WORLD.documents("bel", split="test", chunk=0)
    assert not train_docs & set(test_docs)


def test_relatedness_is_real_in_the_text():
    # Same script throughout (Latn): sisters share more byte 4-grams than cousins, cousins more than
    # languages of another family; a different script shares (almost) none.
    g = {l: ngrams(text(WORLD, l)) for l in ("ama", "ami", "amo", "amu", "bun")}
    sister, cousin, stranger = jaccard(g["ama"], g["ami"]), jaccard(g["ama"], g["amo"]), jaccard(g["ama"], g["bun"])
    assert sister > cousin > stranger
    assert jaccard(g["amo"], g["amu"]) < 0.01  # sisters in Latin and Cyrillic script


def test_grammar_and_lexicon_drift_grows_with_distance():
    # Averaged over worlds: fewer grammar differences and more shared roots between closer languages.
    by_distance = {}
    for seed in range(8):
        w = world_lib.load_world("default", seed=seed)
        for a, b in itertools.combinations(["ama", "ami", "amo", "bel"], 2):
            ga, gb = w.grammar(a), w.grammar(b)
            la, lb = w.lexicon(a), w.lexicon(b)
            diff = sum(ga[k] != gb[k] for k in ga)
            shared = np.mean([la[m] == lb[m] for m in la])
            by_distance.setdefault(w.tree_distance(a, b), []).append((diff, shared))
    means = {d: np.mean(v, axis=0) for d, v in sorted(by_distance.items())}
    (d1, s1), (d3, s3), (d9, s9) = means[1.0], means[3.0], means[9.0]
    assert d1 < d3 < d9 and s1 > s3 > s9


def test_logographic_script_writes_a_symbol_per_morpheme():
    cai, cen = text(WORLD, "cai", 6000), text(WORLD, "cen", 6000)
    assert " " not in cai and "。" in cai
    assert all("\u4e00" <= ch <= "\u9fff" or ch in "〇一二三四五六七八九。" for ch in cai)
    # shared symbols between the two Hani languages (cognates), none with an alphabetic language
    assert len(set(cai) & set(cen)) > 50 and not set(cai) & set(text(WORLD, "ama", 6000))


def test_world_file(tmp_path):
    path = tmp_path / "w.toml"
    path.write_text('seed = 3\n[tree]\nfamily = 2.0\n[languages.xa]\nfamily = "f"\nscript = "Latn"\n'
                    '[languages.xb]\nfamily = "f"\nsubfamily = "s"\nscript = "Grek"\n'
                    '[languages.ya]\nfamily = "g"\nscript = "Hani"\n')
    w = world_lib.load_world(path)
    assert w.langs == ("xa", "xb", "ya") and w.cfg.seed == 3 and w.cfg.family_length == 2.0
    assert w.tree_distance("xa", "xb") == pytest.approx(3.0)  # both leaves 3.5 from the root
    assert w.tokens("xb", 100).size == 100


def test_shipped_world_file_is_the_default():
    from importlib.resources import files

    shipped = world_lib.load_world(str(files("trainer") / "data" / "world_default.toml"))
    assert shipped.cfg == WORLD.cfg


@pytest.mark.parametrize(
    "body, match",
    [
        ('[languages.xa]\nfamily = "f"\nscript = "Runic"\n', r"script must be one of 'Latn', 'Cyrl', 'Grek', 'Hani'; got 'Runic'"),
        ('[languages.xa]\nscript = "Latn"\n', r"\[languages.xa\] needs family"),
        ('colour = 1\n[languages.xa]\nfamily = "f"\nscript = "Latn"\n', r"unknown key 'colour' in world file"),
        ('seed = 1\n', r"defines no languages"),
    ],
)
def test_bad_world_files(tmp_path, body, match):
    path = tmp_path / "w.toml"
    path.write_text(body)
    with pytest.raises(ValueError, match=match):
        world_lib.load_world(path)
