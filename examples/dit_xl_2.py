"""DiT-XL/2 (class-conditional ImageNet 256x256) with and without toca-compile.

    python examples/dit_xl_2.py                               # facebook/DiT-XL-2-256 from the HF cache
    python examples/dit_xl_2.py --class-labels 207 360 --steps 50 --out dit.png
    python examples/dit_xl_2.py --model ./DiT-XL-2-256 --allow-download

Needs: the diffusers pipeline ``facebook/DiT-XL-2-256`` (about 2.7 GB: the 675M-parameter
transformer in fp32 and the SD VAE), in the Hugging Face cache or a local directory; nothing is
downloaded unless ``--allow-download`` is given (or fetch it with
``hf download facebook/DiT-XL-2-256``). A GPU is advised; the CPU works, slowly.

The pipeline's scheduler is replaced by DDIM, the sampler the ``dit-ddim-50`` preset (the official
ToCa DiT settings) was made for; ``--steps`` other than 50 re-times the preset. There is no prompt:
``--class-labels`` are ImageNet class indices, one image each (CFG scale ``--guidance``).

Prints: the model and settings, ``toca_compile.summary(pipe)`` (per generation, which steps ran
full or partial), the wall-clock time of one generation with plain ``torch.compile`` and with
toca-compile (each after a warm-up generation that compiles), the speed-up, the PSNR of the toca
images against the uncached ones, and the path of the PNG holding both side by side (one row per
class label: left uncached, right toca). Exit code 2 and a message when the weights are missing.
"""
from __future__ import annotations

import sys
from collections.abc import Sequence

try:
    from examples import _common
except ImportError:  # run as a script: examples/ is on sys.path
    import _common


def build_parser():
    p = _common.parser(__doc__.splitlines()[0], model="facebook/DiT-XL-2-256", size="2.7 GB", steps=50,
                       preset="dit-ddim-50", prompt=None)
    p.add_argument("--class-labels", type=int, nargs="+", default=[207, 360, 387, 974],
                   help="ImageNet class indices, one image each")
    p.add_argument("--guidance", type=float, default=4.0, help="classifier-free guidance scale")
    return p


def body(args) -> None:
    from diffusers import DDIMScheduler, DiTPipeline

    pipe = _common.load(DiTPipeline, args)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    call = dict(class_labels=list(args.class_labels), num_inference_steps=args.steps,
                guidance_scale=args.guidance)
    _common.compare(pipe, call, args)


def main(argv: Sequence[str] | None = None) -> int:
    return _common.run(body, argv, build_parser(), __file__)


if __name__ == "__main__":
    sys.exit(main())
