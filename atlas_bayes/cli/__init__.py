"""The ``atlas`` command line: one entry point, one module per group of verbs.

Each module in :data:`COMMAND_MODULES` has ``register(subparsers)``, which adds its verbs with
``set_defaults(func=handler)``; a handler takes the parsed ``argparse.Namespace`` and returns an
exit code (``None`` = 0). Heavy imports (NumPyro, Haiku, PyMC) happen inside handlers.

Errors a user can fix (``ValueError``, ``FileNotFoundError``...) print one line,
``atlas: error: ...``, and exit 2; ``--debug`` shows the traceback instead.

Every verb runs with JAX's persistent compilation cache on (:func:`compile_cache_env`), in
``$XDG_CACHE_HOME/atlas/xla`` (``~/.cache/atlas/xla``) capped at 2 GB: NumPyro compiles a sampler per
fit, and a second ``atlas fit`` (or a resumed ``atlas demo``) of the same model on data of the same
shapes loads it instead. ``ATLAS_COMPILE_CACHE=0`` turns it off; a ``JAX_COMPILATION_CACHE_DIR``
already set is left alone. (``atlas --help`` imports JAX too: the package does.)
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings
from collections.abc import Mapping
from pathlib import Path

__all__ = ["main", "build_parser", "compile_cache_env", "COMMAND_MODULES"]

COMMAND_MODULES = (
    "atlas_bayes.cli.data",
    "atlas_bayes.cli.fit",
    "atlas_bayes.cli.query",
    "atlas_bayes.cli.compare",
    "atlas_bayes.cli.demo",
    "atlas_bayes.cli.train",
    "atlas_bayes.cli.analysis",
    "atlas_bayes.cli.surrogate",
)


def _format_warning(message, category, filename, lineno, line=None) -> str:
    return f"atlas: warning: {' '.join(str(message).split())}\n"


def compile_cache_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment variables that turn on JAX's persistent compilation cache for a verb.

    Empty when ``ATLAS_COMPILE_CACHE=0`` or when ``JAX_COMPILATION_CACHE_DIR`` is already set. Programs
    that compile in under half a second are not cached (reading them back would not be faster).
    """
    if environ.get("ATLAS_COMPILE_CACHE", "1").strip().lower() in ("0", "false", "no", "off"):
        return {}
    if environ.get("JAX_COMPILATION_CACHE_DIR"):
        return {}
    base = Path(environ.get("XDG_CACHE_HOME") or Path(environ.get("HOME", "~")).expanduser() / ".cache")
    return {"JAX_COMPILATION_CACHE_DIR": str(base / "atlas" / "xla"),
            "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0.5",
            "JAX_COMPILATION_CACHE_MAX_SIZE": str(2 * 1024**3)}


def _enable_compile_cache() -> None:
    settings = compile_cache_env(os.environ)
    if not settings:
        return
    os.environ.update(settings)  # for the processes a verb starts (the sweep's workers)
    import jax  # already imported by the package; set what it read from the environment at import

    jax.config.update("jax_compilation_cache_dir", settings["JAX_COMPILATION_CACHE_DIR"])
    jax.config.update("jax_persistent_cache_min_compile_time_secs",
                      float(settings["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]))
    jax.config.update("jax_compilation_cache_max_size", int(settings["JAX_COMPILATION_CACHE_MAX_SIZE"]))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="atlas",
        description="Multilingual scaling laws with uncertainty: import runs, train, fit, predict, plan.",
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    warnings.formatwarning = _format_warning
    _enable_compile_cache()
    try:
        code = args.func(args)
    except KeyboardInterrupt:
        print("atlas: interrupted", file=sys.stderr)
        return 130
    except (ValueError, TypeError, FileNotFoundError, FileExistsError, KeyError, OSError) as err:
        if args.debug:
            raise
        text = str(err).strip().strip("'\"") if isinstance(err, KeyError) else str(err).strip()
        # Drop the "- " bullets of multi-problem messages (CubeError), not the dashes of "--flag".
        lines = [ln.strip().removeprefix("- ").strip() for ln in text.splitlines() if ln.strip()]
        message = lines[0] + (": " + "; ".join(lines[1:]) if len(lines) > 1 else "")
        print(f"atlas: error: {message}", file=sys.stderr)
        return 2
    return 0 if code is None else int(code)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
