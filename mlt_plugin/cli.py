"""The `mlt` command: track, train, eval, bench, and toolkit set-up helpers."""
import argparse
import sys


def build_parser():
    from mlt_plugin.training import cli as train_cli

    parser = argparse.ArgumentParser(prog="mlt", description="MLT: real-time meta-learning visual tracker")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module in (train_cli,):
        module.add_parser(subparsers)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except (ValueError, FileNotFoundError) as err:
        print(f"mlt {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
