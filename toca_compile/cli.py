"""The ``toca`` command line."""
from __future__ import annotations

import argparse


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="toca", description="Token-wise caching for diffusion transformers")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="compile a small DiT with and without caching; show regions and FLOPs saved")
    demo.add_argument("--steps", type=int, default=20)
    demo.add_argument("--interval", type=int, default=3)
    demo.add_argument("--ratio", type=float, default=0.15)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--time", action="store_true", help="also time plain torch.compile vs toca with Inductor")
    args = parser.parse_args(argv)
    if args.command == "demo":
        from .config import ToCaConfig
        from .demo import run_demo

        try:
            ToCaConfig(interval=args.interval, ratio=args.ratio, seed=args.seed)
        except ValueError as error:
            parser.error(str(error))
        if args.steps < 1:
            parser.error("--steps must be >= 1")
        run_demo(args.steps, args.interval, args.ratio, args.seed, args.time)


if __name__ == "__main__":
    main()
