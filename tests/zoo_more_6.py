"""More diffusers transformers for the test zoo (group 6); each entry registers itself in
diffusers_zoo.ZOO (denoisers) or EXTRA (transformers that are not DiT denoisers)."""
from __future__ import annotations
