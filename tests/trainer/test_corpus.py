"""Real corpora: folder layouts (text, jsonl.gz, parquet shards), held-out text, bad corpora."""

import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from trainer.config import SEP
from trainer.corpus import detect_script, load_corpus


def docs(stream):
    parts, cur = [], []
    for t in stream:
        if t == SEP:
            parts.append(bytes(cur).decode())
            cur = []
        else:
            cur.append(int(t))
    return parts


@pytest.fixture
def corpus_dir(tmp_path):
    (tmp_path / "en.txt").write_text("\n\n".join(f"English document number {i}." for i in range(40)))
    (tmp_path / "ru").mkdir()
    with gzip.open(tmp_path / "ru" / "ru_clean_0000.jsonl.gz", "wt", encoding="utf-8") as f:
        for i in range(30):
            f.write(json.dumps({"text": f"Русский документ номер {i}."}, ensure_ascii=False) + "\n")
    (tmp_path / "ja").mkdir()
    pq.write_table(pa.table({"text": [f"日本語の文書{i}です。" for i in range(30)]}), tmp_path / "ja" / "part0.parquet")
    return tmp_path


def test_layouts_scripts_and_held_out_text(corpus_dir):
    c = load_corpus(corpus_dir, test_tokens=100)
    assert set(c.langs) == {"en", "ru", "ja"}
    assert {l: m["script"] for l, m in c.metadata().items()} == {"en": "Latn", "ru": "Cyrl", "ja": "Jpan"}
    for lang in c.langs:
        train, test = docs(c.train_tokens(lang, int(c.available(lang)))), docs(c.test_tokens(lang, 10**6))
        assert test and train and not set(train) & set(test)  # no test document is trained on
        assert sum(len(d.encode()) + 1 for d in test[:-1]) < 100  # held out: the first docs up to test_tokens
    assert c.relatedness() is None


def test_explicit_test_files_and_reading_cap(tmp_path):
    (tmp_path / "fr.txt").write_text("\n\n".join(f"Bonjour numéro {i}." for i in range(50)))
    (tmp_path / "fr.test.txt").write_text("Texte de test.\n\nEncore du test.")
    c = load_corpus(tmp_path, test_tokens=1000, max_train_tokens=60)
    assert docs(c.test_tokens("fr", 1000)) == ["Texte de test.", "Encore du test."]
    train = docs(c.train_tokens("fr", int(c.available("fr"))))
    assert train[0] == "Bonjour numéro 0." and 60 <= c.available("fr") < 100  # stopped reading after the cap
    with pytest.raises(ValueError, match=r"language 'fr' has \d+ training tokens, fewer than the 1000 asked for"):
        c.train_tokens("fr", 1000)


def test_empty_corpus(tmp_path):
    (tmp_path / "notes.csv").write_text("a,b\n")
    with pytest.raises(ValueError, match=r"empty corpus: no text found under .*; expected <lang>\.txt"):
        load_corpus(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"corpus folder .* not found"):
        load_corpus(tmp_path / "missing")


def test_language_without_test_text(tmp_path):
    (tmp_path / "de.txt").write_text("Ein einziges Dokument.")
    with pytest.raises(ValueError, match=r"language 'de' has no training text .*all went to the 64 held-out test tokens"):
        load_corpus(tmp_path, test_tokens=64)
    (tmp_path / "de.txt").write_text("")
    (tmp_path / "sw.txt").write_text("x\n\ny")
    with pytest.raises(ValueError, match=r"language 'de' has no test text in .*add a de\.test\.txt file"):
        load_corpus(tmp_path, langs=["de"], test_tokens=64)
    with pytest.raises(ValueError, match=r"has no text for 'xx'; it has de, sw"):
        load_corpus(tmp_path, langs=["xx"])


def test_bad_records(tmp_path):
    (tmp_path / "it").mkdir()
    (tmp_path / "it" / "a.jsonl").write_text('{"txt": "ciao"}\n')
    with pytest.raises(ValueError, match=r"line 1 has no string field 'text' \(the MADLAD-400 layout\)"):
        load_corpus(tmp_path)


def test_detect_script():
    assert detect_script("Привет, мир") == "Cyrl" and detect_script("Γειά σου") == "Grek"
    assert detect_script("中文文本") == "Hani" and detect_script("12345") == ""
