"""PixArt-α or PixArt-Σ (text to image) with and without toca-compile.

    python examples/pixart.py                                   # PixArt-alpha/PixArt-XL-2-1024-MS
    python examples/pixart.py --model PixArt-alpha/PixArt-Sigma-XL-2-1024-MS --prompt "a city at night"
    python examples/pixart.py --model ./my-pixart --steps 20 --out pixart.png

Needs: a PixArt diffusers pipeline, by default ``PixArt-alpha/PixArt-XL-2-1024-MS`` (about 22 GB,
most of it the T5-XXL text encoder; PixArt-Σ, ``PixArt-alpha/PixArt-Sigma-XL-2-1024-MS``, is about
the same), in the Hugging Face cache or a local directory. Nothing is downloaded unless
``--allow-download`` is given (or fetch it with ``hf download <repo id>``). A GPU is
advised.

α or Σ is read from the pipeline's ``model_index.json`` (``_class_name``); both run the
``pixart-dpm-20`` preset (the official PixArt-α ToCa settings, DPM-Solver++ 20 steps), re-timed
when ``--steps`` is not 20.

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


PIPELINES = ("PixArtAlphaPipeline", "PixArtSigmaPipeline")


def build_parser():
    p = _common.parser(__doc__.splitlines()[0], model="PixArt-alpha/PixArt-XL-2-1024-MS", size="22 GB",
                       steps=20, preset="pixart-dpm-20")
    p.add_argument("--negative-prompt", default="")
    p.add_argument("--guidance", type=float, default=4.5, help="classifier-free guidance scale")
    p.add_argument("--height", type=int, default=None, help="default: the model's own resolution")
    p.add_argument("--width", type=int, default=None)
    p.add_argument("--no-resolution-binning", dest="binning", action="store_false",
                   help="generate at exactly --height x --width (default: the nearest size the model was trained on)")
    return p


def body(args) -> None:
    pipe = _common.load(_common.pipeline_class_from_index(args, PIPELINES), args)
    call = dict(prompt=args.prompt, negative_prompt=args.negative_prompt, num_inference_steps=args.steps,
                guidance_scale=args.guidance, height=args.height, width=args.width, use_resolution_binning=args.binning)
    _common.compare(pipe, call, args)


def main(argv: Sequence[str] | None = None) -> int:
    return _common.run(body, argv, build_parser(), __file__)


if __name__ == "__main__":
    sys.exit(main())
