"""Language metadata: the shipped table, cube attrs first, pair features and similarity."""

import numpy as np
import pytest
import xarray as xr

from atlas_bayes import languages
from atlas_bayes.transfer_model import paper_matrix


def test_table_covers_the_paper_languages():
    t = languages.table()
    assert set(paper_matrix().index) <= set(t.index)
    assert {"name", "script", "family", "subfamily"} <= set(t.columns)
    assert t.loc["ur", "script"] == "Arab" and t.loc["hi", "script"] == "Deva"
    assert t.loc["ur", "family"] == t.loc["hi", "family"] == "Indo-European"


def test_cube_attrs_come_first_and_unknowns_are_named():
    cube = xr.Dataset(attrs={"language_metadata": {"en": {"script": "Cyrl", "family": "x"}, "ama": {"script": "Latn",
                                                                                                  "family": "alpine"}}})
    meta = languages.metadata(["en", "ama", "fr"], cube=cube)
    assert meta.loc["en", "script"] == "Cyrl" and meta.loc["en", "from"] == "cube attrs"
    assert meta.loc["fr", "from"] == "languages.csv" and meta.loc["ama", "subfamily"] == ""
    with pytest.raises(ValueError, match=r"no script/family metadata for language\(s\) \['zz', 'qq'\]"):
        languages.metadata(["en", "zz", "qq"])


def test_pair_features_and_similarity():
    langs = ["en", "de", "ru", "uk", "zh"]
    f = languages.pair_features(langs, features=("shared_script", "shared_family", "shared_subfamily"))
    assert f["shared_script"][0, 1] == 1 and f["shared_script"][0, 2] == 0 and f["shared_script"][2, 3] == 1
    assert f["shared_family"][0, 2] == 1 and f["shared_family"][0, 4] == 0
    assert f["shared_subfamily"][0, 1] == 1 and f["shared_subfamily"][0, 2] == 0
    sim = languages.similarity(langs)
    assert np.allclose(np.diag(sim), 1) and sim[0, 1] == pytest.approx(1.0) and sim[0, 2] == pytest.approx(1 / 3)
    assert sim[0, 4] == 0
    with pytest.raises(ValueError, match=r"unknown pair feature\(s\) \['shared_tone'\]"):
        languages.pair_features(langs, features=("shared_tone",))
    with pytest.raises(ValueError, match=r"feature 'relatedness' needs the synthetic world's tree distances"):
        languages.pair_features(langs, features=("relatedness",))


def test_tree_relatedness_from_cube_attrs():
    rel = {"langs": ["a", "b", "c"], "tree_distance": [[0, 1, 6], [1, 0, 6], [6, 6, 0]],
           "shared_script": [[1, 1, 0], [1, 1, 0], [0, 0, 1]]}
    cube = xr.Dataset(attrs={"relatedness": rel})
    r = languages.pair_features(["c", "a"], features=("relatedness",), cube=cube)["relatedness"]
    assert r.tolist() == [[1.0, 0.0], [0.0, 1.0]]
    assert languages.similarity(["a", "b"], cube=cube)[0, 1] == pytest.approx(5 / 6)
    with pytest.raises(ValueError, match=r"has no tree distance for language\(s\) \['d'\]"):
        languages.tree_relatedness(["a", "d"], cube)
