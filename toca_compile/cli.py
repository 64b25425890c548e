"""The ``toca`` command line."""
from __future__ import annotations

import argparse


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="toca", description="Token-wise caching for diffusion transformers")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="sample the bundled MNIST DiT with plain torch.compile and with toca; "
                                        "print FLOPs, speed-up and quality; write a side-by-side PNG")
    demo.add_argument("--digits", type=int, default=20, help="images to generate (labels cycle 0-9)")
    demo.add_argument("--steps", type=int, default=50, help="DDIM steps")
    demo.add_argument("--guidance", type=float, default=3.0, help="classifier-free guidance scale")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds")
    demo.add_argument("--interval", type=int, default=None, help="override ToCaConfig.interval")
    demo.add_argument("--ratio", type=float, default=None, help="override ToCaConfig.ratio")
    demo.add_argument("--out", default="toca_demo.png", help="where to write the side-by-side PNG")
    plot = sub.add_parser("plot", help="pictures of what the caches did on the bundled MNIST DiT: refresh heatmap, "
                                        "schedule strip, refreshed tokens on a digit (needs matplotlib)")
    plot.add_argument("--out", default="toca_pictures", help="folder for the PNG files")
    plot.add_argument("--steps", type=int, default=50, help="DDIM steps")
    plot.add_argument("--digits", type=int, default=4, help="digits to generate (labels cycle 0-9)")
    plot.add_argument("--step", type=int, default=None, help="step of the token overlay (default: a middle partial step)")
    plot.add_argument("--region", default=None, help="region label of the overlay (default: the middle block's MLP)")
    plot.add_argument("--interval", type=int, default=None, help="override ToCaConfig.interval")
    plot.add_argument("--ratio", type=float, default=None, help="override ToCaConfig.ratio")
    from .calibrate_cli import add_calibrate_parser, run_calibrate
    from .flops.cli import add_flops_parser, run_flops

    add_flops_parser(sub)
    calibrate = add_calibrate_parser(sub)
    args = parser.parse_args(argv)
    if args.command == "flops":
        run_flops(args, parser)
    if args.command == "calibrate":
        run_calibrate(args, calibrate)
    if args.command == "demo":
        from .config import ToCaConfig
        from .demo.run import run_demo

        overrides = {k: v for k, v in (("interval", args.interval), ("ratio", args.ratio)) if v is not None}
        try:
            config = ToCaConfig(**overrides)
        except ValueError as error:
            parser.error(str(error))
        for name in ("digits", "steps", "rounds"):
            if getattr(args, name) < 1:
                parser.error(f"--{name} must be >= 1")
        run_demo(args.digits, args.steps, args.guidance, args.seed, args.rounds, args.out, config)
    if args.command == "plot":
        from .config import ToCaConfig
        from .demo.pictures import write_pictures

        overrides = {k: v for k, v in (("interval", args.interval), ("ratio", args.ratio)) if v is not None}
        if args.digits < 1:
            parser.error("--digits must be >= 1")
        try:
            paths = write_pictures(args.out, args.steps, args.digits, args.step, args.region, ToCaConfig(**overrides))
        except ValueError as error:
            parser.error(str(error))
        for path in paths.values():
            print(path)


if __name__ == "__main__":
    main()
