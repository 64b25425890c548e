"""A video DiT (CogVideoX, Wan 2.1 or LTX-Video, text to video) with and without toca-compile.

    python examples/video.py                                    # THUDM/CogVideoX-2b
    python examples/video.py --frames 49 --height 480 --width 720 --steps 50 --out video.png
    python examples/video.py --model Wan-AI/Wan2.1-T2V-1.3B-Diffusers --height 480 --width 832 --frames 33

Needs: a ``CogVideoXPipeline``, ``WanPipeline`` or ``LTXPipeline`` (read from the pipeline's
``model_index.json``); by default ``THUDM/CogVideoX-2b`` (about 13 GB, most of it the T5-XXL text
encoder), in the Hugging Face cache or a local directory. Nothing is downloaded unless
``--allow-download`` is given. A GPU is advised. Wan also needs ``pip install accelerate``:
diffusers loads Wan's transformer (which keeps some modules in fp32) only through accelerate.

There is no official ToCa preset for these models: toca-compile runs its defaults (full every
``--interval`` 3 steps, ``--ratio`` 0.15 of the tokens refreshed) or ``--preset`` /
``--schedule-file``. Classifier-free guidance runs as one batched call per step (CogVideoX, LTX)
or as two calls under diffusers' ``cache_context`` (Wan), each CFG branch with caches of its own.

Prints: the model and settings, ``toca_compile.summary(pipe)``, the time of one generation with
plain ``torch.compile`` and with toca-compile (each after a warm-up generation), the speed-up, the
PSNR of the toca video against the uncached one (over all frames), and the path of the PNG strip:
one row per shown frame (``--strip-frames``, evenly spaced), left uncached, right toca. Exit code 2
and a message when the weights are missing.
"""
from __future__ import annotations

import importlib.util
import sys
from collections.abc import Sequence

try:
    from examples import _common
except ImportError:  # run as a script: examples/ is on sys.path
    import _common

PIPELINES = ("CogVideoXPipeline", "WanPipeline", "LTXPipeline")


def build_parser():
    p = _common.parser(__doc__.splitlines()[0], model="THUDM/CogVideoX-2b", size="13 GB", steps=50, preset=None,
                       prompt="a red fox running through fresh snow, cinematic")
    p.add_argument("--negative-prompt", default="")
    p.add_argument("--guidance", type=float, default=6.0, help="classifier-free guidance scale")
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--width", type=int, default=720)
    p.add_argument("--frames", type=int, default=49, help="frames to generate (CogVideoX, Wan: 4k + 1; LTX: 8k + 1)")
    p.add_argument("--strip-frames", type=int, default=6, help="frames shown in the PNG")
    return p


def body(args) -> None:
    pipeline_class = _common.pipeline_class_from_index(args, PIPELINES)
    if pipeline_class.__name__ == "WanPipeline" and importlib.util.find_spec("accelerate") is None:
        raise SystemExit("error: diffusers loads Wan's transformer only with accelerate installed: pip install accelerate")
    pipe = _common.load(pipeline_class, args)
    call = dict(prompt=args.prompt, negative_prompt=args.negative_prompt, num_inference_steps=args.steps,
                guidance_scale=args.guidance, height=args.height, width=args.width, num_frames=args.frames)
    _common.compare(pipe, call, args, row="frame", max_rows=args.strip_frames)


def main(argv: Sequence[str] | None = None) -> int:
    return _common.run(body, argv, build_parser(), __file__)


if __name__ == "__main__":
    sys.exit(main())
