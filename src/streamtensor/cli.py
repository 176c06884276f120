"""Command line: a thin layer over the Python API. Errors print as one line and exit with status 2."""

from __future__ import annotations

import argparse
import sys

from streamtensor.errors import StreamTensorError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # argparse's usage dump is noise for a bad option: one line naming the problem.
        print(f"streamtensor: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="streamtensor", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    comp = sub.add_parser("compile", help="compile one decoder block of an LLM")
    comp.add_argument("model", help="gpt2, llama, qwen2, gemma, or a local Hugging Face checkpoint directory")
    comp.add_argument("-o", "--output", required=True, help="output directory")
    comp.add_argument("--mode", choices=["prefill", "decode"], default="prefill")
    comp.add_argument("--seq-len", type=_positive_int, default=32, help="prompt tokens (prefill)")
    comp.add_argument("--max-len", type=_positive_int, default=128, help="KV-cache capacity (decode)")
    comp.add_argument("--size", choices=["tiny", "paper"], default="tiny", help="built-in model geometry")
    comp.add_argument("--seed", type=int, default=0, help="seed of random weights and example inputs")
    comp.add_argument("--layer", type=int, default=0, help="index of the decoder layer to compile")
    comp.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    return parser


def _compile(args: argparse.Namespace) -> None:
    from streamtensor.driver import compile_llm_block

    design, _ = compile_llm_block(args.model, mode=args.mode, seq_len=args.seq_len, max_len=args.max_len,
                                  size=args.size, seed=args.seed, layer=args.layer, verbose=not args.quiet)
    out = design.save(args.output)
    report = design.report
    print(f"compiled {report['model']} ({report['mode']}) -> {out}")
    print("  ops: " + ", ".join(f"{k}={v}" for k, v in report["op_counts"].items() if not k.startswith("generic.")))
    print("  stages: " + ", ".join(f"{k} {v:.2f}s" for k, v in report["stages"].items()))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "compile":
            _compile(args)
    except StreamTensorError as exc:
        print(f"streamtensor: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
