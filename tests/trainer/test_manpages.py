"""The Debian manpages corpus builder (downloads packages: marked network, skipped without them)."""

import shutil

import pytest

from trainer import manpages
from trainer.corpus import load_corpus

pytestmark = pytest.mark.network


def test_build_fr_en_ru(tmp_path):
    if manpages.available_tools():
        pytest.skip(f"not a Debian system with groff: missing {', '.join(manpages.available_tools())}")
    try:
        stats = manpages.build(tmp_path / "corpus", langs=["fr", "en", "ru"], max_pages=6, progress=False)
    except RuntimeError as err:  # no network or no mirror: nothing to test here
        pytest.skip(str(err))
    assert set(stats) == {"fr", "en", "ru"} and all(s["pages"] > 0 for s in stats.values())
    corpus = load_corpus(tmp_path / "corpus", test_tokens=2000)
    assert {l: m["script"] for l, m in corpus.metadata().items()} == {"en": "Latn", "fr": "Latn", "ru": "Cyrl"}
    fr = bytes(corpus.train_tokens("fr", int(corpus.available("fr")))[:20000].clip(0, 255).astype("uint8")).decode(
        "utf-8", "ignore")
    assert "\x1b" not in fr and "\x08" not in fr  # no terminal escapes or overstrikes left
    assert any(w in fr for w in ("DESCRIPTION", "SYNOPSIS", "VOIR AUSSI", "NOM"))


def test_unknown_language(tmp_path):
    if shutil.which("groff") is None:
        pytest.skip("no groff")
    with pytest.raises(ValueError, match=r"no Debian manpages package known for 'xx'"):
        manpages.build(tmp_path, langs=["xx"], progress=False)
