"""toca-compile: token-wise feature caching (ToCa) for diffusion transformers, as a
torch.compile backend that works on any traced transformer."""
from .backend import ToCa, default_toca, toca_backend
from .config import ToCaConfig
from .inspection import inspect
from .pipelines import applied, apply, is_applied, remove, summary
from .runtime import ToCaWarning
from .stats import Stats, Summary

__all__ = ["ToCa", "ToCaConfig", "ToCaWarning", "Stats", "Summary", "applied", "apply", "default_toca", "inspect",
           "is_applied", "remove", "summary", "toca_backend"]
__version__ = "0.1.0"
