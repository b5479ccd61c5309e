"""The ``atlas`` command line: one entry point, one module per group of verbs.

Each module in :data:`COMMAND_MODULES` has ``register(subparsers)``, which adds its verbs with
``set_defaults(func=handler)``; a handler takes the parsed ``argparse.Namespace`` and returns an
exit code (``None`` = 0). Heavy imports (JAX, NumPyro, Haiku) happen inside handlers, so
``atlas --help`` is fast.

Errors a user can fix (``ValueError``, ``FileNotFoundError``...) print one line,
``atlas: error: ...``, and exit 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings

__all__ = ["main", "build_parser", "COMMAND_MODULES"]

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
