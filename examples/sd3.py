"""Stable Diffusion 3 (MMDiT, text to image) with and without toca-compile.

    python examples/sd3.py                                      # stabilityai/stable-diffusion-3-medium-diffusers
    python examples/sd3.py --model stabilityai/stable-diffusion-3.5-medium --steps 40
    python examples/sd3.py --model ./sd3 --prompt "a city at night" --out sd3.png

Needs: a ``StableDiffusion3Pipeline``, by default ``stabilityai/stable-diffusion-3-medium-diffusers``
(about 20 GB with its three text encoders; a gated repository: accept the licence on huggingface.co
and ``hf auth login`` first), in the Hugging Face cache or a local directory. Nothing is
downloaded unless ``--allow-download`` is given. A GPU with 24 GB or more is advised.

There is no official ToCa preset for SD3: toca-compile runs its defaults (full every
``--interval`` 3 steps, ``--ratio`` 0.15 of the tokens refreshed), or any ``--preset`` /
``--schedule-file`` (``toca calibrate --pipeline ...`` writes one for this model).

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
    p = _common.parser(__doc__.splitlines()[0], model="stabilityai/stable-diffusion-3-medium-diffusers",
                       size="20 GB", steps=28, preset=None, gated=True)
    p.add_argument("--negative-prompt", default="")
    p.add_argument("--guidance", type=float, default=7.0, help="classifier-free guidance scale")
    p.add_argument("--height", type=int, default=None, help="default: the model's own resolution")
    p.add_argument("--width", type=int, default=None)
    return p


def body(args) -> None:
    from diffusers import StableDiffusion3Pipeline

    pipe = _common.load(StableDiffusion3Pipeline, args)
    call = dict(prompt=args.prompt, negative_prompt=args.negative_prompt, num_inference_steps=args.steps,
                guidance_scale=args.guidance, height=args.height, width=args.width)
    _common.compare(pipe, call, args)


def main(argv: Sequence[str] | None = None) -> int:
    return _common.run(body, argv, build_parser(), __file__)


if __name__ == "__main__":
    sys.exit(main())
