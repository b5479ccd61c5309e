"""A real multilingual corpus from Debian's translated manual pages.

Debian ships the manual pages of common tools translated by volunteers (``manpages-de``,
``manpages-fr``, ``manpages-ja``...; English in ``manpages``). :func:`build` downloads those packages
with ``apt-get download`` (no installation, no root needed), unpacks them with ``dpkg-deb -x``, renders
every page to plain UTF-8 text with ``groff`` (no hyphenation, ragged right, one continuous page), and
writes one document per page to ``<out>/<lang>/manpages.jsonl`` (``{"text", "page"}`` records), the
layout :func:`trainer.corpus.load_corpus` reads::

    atlas manpages --out corpora/manpages --langs en,fr,de,ja
    # sweep file:  [data]  corpus = "corpora/manpages"

The pages are not parallel across languages (each translation team picked its own), their text is
technical and repetitive, and sizes differ a lot (a few hundred kB to several MB per language): a small
but real corpus with Latin, Cyrillic and CJK scripts. Needs a Debian or Ubuntu system with network
access to its package mirror, and ``groff``.
"""

from __future__ import annotations

import concurrent.futures as cf
import gzip
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

__all__ = ["PACKAGES", "build", "download", "render", "available_tools"]

# lang -> (Debian package, locale folder under usr/share/man; "" = English pages in usr/share/man/man*)
PACKAGES: dict[str, tuple[str, str]] = {
    "en": ("manpages", ""),
    "de": ("manpages-de", "de"),
    "fr": ("manpages-fr", "fr"),
    "es": ("manpages-es", "es"),
    "it": ("manpages-it", "it"),
    "pl": ("manpages-pl", "pl"),
    "ru": ("manpages-ru", "ru"),
    "uk": ("manpages-uk", "uk"),
    "ja": ("manpages-ja", "ja"),
    "zh": ("manpages-zh", "zh_CN"),
    "pt": ("manpages-pt-br", "pt_BR"),
    "nl": ("manpages-nl", "nl"),
    "cs": ("manpages-cs", "cs"),
    "da": ("manpages-da", "da"),
    "fi": ("manpages-fi", "fi"),
    "hu": ("manpages-hu", "hu"),
    "ro": ("manpages-ro", "ro"),
    "sv": ("manpages-sv", "sv"),
    "el": ("manpages-el", "el"),
    "vi": ("manpages-vi", "vi"),
    "id": ("manpages-id", "id"),
    "mk": ("manpages-mk", "mk"),
    "nb": ("manpages-nb", "nb"),
    "sr": ("manpages-sr", "sr"),
    "tr": ("manpages-tr", "tr"),
}
_TOOLS = ("apt-get", "dpkg-deb", "groff")


def available_tools() -> list[str]:
    """The tools :func:`build` needs that this machine lacks (empty when it can run)."""
    return [t for t in _TOOLS if shutil.which(t) is None]


def download(package: str, cache: str | os.PathLike) -> Path:
    """The ``.deb`` of ``package`` in ``cache``, fetched with ``apt-get download`` if not there yet."""
    cache = Path(cache)
    cache.mkdir(parents=True, exist_ok=True)
    found = sorted(cache.glob(f"{package}_*.deb"))
    if found:
        return found[-1]
    proc = subprocess.run(["apt-get", "download", package], cwd=cache, capture_output=True, text=True)
    found = sorted(cache.glob(f"{package}_*.deb"))
    if proc.returncode != 0 or not found:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"could not download Debian package {package!r}: {tail[0]}")
    return found[-1]


def render(page: str | os.PathLike) -> str:
    """One manual page (``.gz`` or plain roff) as plain text: no hyphenation, no bold/underline escapes."""
    page = Path(page)
    raw = gzip.decompress(page.read_bytes()) if page.suffix == ".gz" else page.read_bytes()
    if raw.lstrip().startswith(b".so "):
        return ""  # an alias of another page
    proc = subprocess.run(["groff", "-k", "-t", "-Tutf8", "-mandoc", "-P-cbou", "-rHY=0", "-dAD=l", "-rcR=1",
                           "-rLL=100n"], input=raw, capture_output=True)
    text = proc.stdout.decode("utf-8", errors="replace")
    lines = [ln.rstrip() for ln in text.splitlines()]
    while lines and not lines[0].strip():
        lines.pop(0)
    while lines and not lines[-1].strip():
        lines.pop()
    if len(lines) > 2:  # drop the running header and footer ("LS(1)   User Commands   LS(1)")
        lines = lines[1:-1]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _pages(root: Path, locale: str) -> list[Path]:
    base = root / "usr" / "share" / "man" / locale if locale else root / "usr" / "share" / "man"
    return sorted(p for p in base.glob("man*/*") if p.is_file())


def build(out: str | os.PathLike, *, langs: Sequence[str] | None = None, max_pages: int | None = None,
          cache: str | os.PathLike | None = None, progress: bool = True) -> dict[str, dict]:
    """Download, render and write the corpus; returns ``{lang: {"package", "pages", "bytes"}}``.

    Languages whose package cannot be fetched raise ``RuntimeError`` naming the package.
    """
    missing = available_tools()
    if missing:
        raise RuntimeError(f"the manpages builder needs a Debian/Ubuntu system; missing: {', '.join(missing)}")
    langs = list(PACKAGES) if langs is None else list(langs)
    unknown = [l for l in langs if l not in PACKAGES]
    if unknown:
        raise ValueError(f"no Debian manpages package known for {', '.join(map(repr, unknown))}; known: {', '.join(PACKAGES)}")
    out = Path(out)
    cache = Path(cache) if cache is not None else out / ".debs"
    stats = {}
    for lang in langs:
        package, locale = PACKAGES[lang]
        deb = download(package, cache)
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(["dpkg-deb", "-x", str(deb), tmp], check=True, capture_output=True)
            pages = _pages(Path(tmp), locale)
            if max_pages is not None:
                pages = pages[:max_pages]
            with cf.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
                texts = list(pool.map(render, pages))
        records = [{"text": t, "page": p.name.removesuffix(".gz")} for p, t in zip(pages, texts) if t]
        dest = out / lang / "manpages.jsonl"
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_path = tempfile.mkstemp(prefix="manpages.", suffix=".tmp", dir=dest.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for r in records:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        os.replace(tmp_path, dest)
        stats[lang] = {"package": package, "pages": len(records),
                       "bytes": sum(len(r["text"].encode("utf-8")) for r in records)}
        if progress:
            print(f"manpages: {lang} ({package}): {len(records)} pages, {stats[lang]['bytes']} bytes", flush=True)
    return stats
