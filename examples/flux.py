"""FLUX.1 (text to image) with and without toca-compile.

    python examples/flux.py                                     # black-forest-labs/FLUX.1-dev, 50 steps
    python examples/flux.py --steps 28                          # the flux-50-n5 preset re-timed to 28 steps
    python examples/flux.py --preset flux-50-n4 --height 768 --width 768 --out flux.png

Needs: a ``FluxPipeline``, by default ``black-forest-labs/FLUX.1-dev`` (about 34 GB: the 12B
transformer in bf16, T5-XXL and CLIP; a gated repository: accept the licence on huggingface.co and
``hf auth login`` first), in the Hugging Face cache or a local directory. Nothing is
downloaded unless ``--allow-download`` is given. A GPU with 40 GB or more is advised.

Runs the ``flux-50-n5`` preset (the official FLUX ToCa settings: three full steps, then one every
five), re-timed when ``--steps`` is not 50. ``--true-cfg`` above 1 adds a negative prompt (two
transformer calls per step, each CFG branch with caches of its own).

Prints: the model and settings, ``toca_compile.summary(pipe)``, the time of one generation with
plain ``torch.compile`` and with toca-compile (each after a warm-up generation), the speed-up, the
PSNR of the toca image against the uncached one, and the path of the side-by-side PNG (left
uncached, right toca). Exit code 2 and a message when the weights are missing.
"""
from __future__ import annotations

import sys
from collections.abc import Sequence

try:
    from examples import _common
except ImportError:  # run as a script: examples/ is on sys.path
    import _common


def build_parser():
    p = _common.parser(__doc__.splitlines()[0], model="black-forest-labs/FLUX.1-dev", size="34 GB",
                       steps=50, preset="flux-50-n5", gated=True)
    p.add_argument("--guidance", type=float, default=3.5, help="distilled guidance scale")
    p.add_argument("--true-cfg", type=float, default=1.0, help="true CFG scale (with --negative-prompt)")
    p.add_argument("--negative-prompt", default="")
    p.add_argument("--height", type=int, default=1024)
    p.add_argument("--width", type=int, default=1024)
    return p


def body(args) -> None:
    from diffusers import FluxPipeline

    pipe = _common.load(FluxPipeline, args)
    call = dict(prompt=args.prompt, num_inference_steps=args.steps, guidance_scale=args.guidance,
                height=args.height, width=args.width)
    if args.true_cfg > 1:
        call.update(negative_prompt=args.negative_prompt or " ", true_cfg_scale=args.true_cfg)
    _common.compare(pipe, call, args)


def main(argv: Sequence[str] | None = None) -> int:
    return _common.run(body, argv, build_parser(), __file__)


if __name__ == "__main__":
    sys.exit(main())
