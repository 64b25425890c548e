"""The demo domain: a small class-conditional DiT trained on MNIST pixels and the tools around it.

:mod:`.zoo` loads the bundled DiT and MNIST classifier and samples digits with DDIM and
classifier-free guidance; :mod:`.mnist` reads the MNIST idx files (checked against their
SHA256 sums); :mod:`.metrics` computes PSNR, SSIM, Fréchet distance, classifier-feature FID and
class accuracy; :mod:`.run` is ``toca demo``; ``assets/`` holds the weights, their training
record, the classifier features of real test digits and the calibrated MNIST schedules. It exists
to show and measure token-wise caching on a real trained diffusion transformer. The compiler
core (backend, runtime, config, passes, ...) never imports it: only the command line
(``toca demo``, ``toca calibrate --model mnist``), tests, benchmarks and examples do, and its
extra dependencies (diffusers, safetensors, torchmetrics, scipy) come with ``pip install
".[demo]"``.
"""
