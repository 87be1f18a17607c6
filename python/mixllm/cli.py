"""The ``mixllm`` command line."""

from __future__ import annotations

import argparse
import json
import sys

from . import __version__, available_backends, simd_backend


def _info(_: argparse.Namespace) -> int:
    print(json.dumps({"version": __version__, "simd_backend": simd_backend(),
                      "available_backends": available_backends()}, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mixllm", description="MixLLM LLM router")
    parser.add_argument("--version", action="version", version=f"mixllm {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("info", help="print the version and the SIMD kernels in use")
    p.set_defaults(func=_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
