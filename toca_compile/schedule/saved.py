"""The schedule file: full steps written by ``toca calibrate`` and read by
:meth:`ToCaConfig.from_schedule_file <toca_compile.config.ToCaConfig.from_schedule_file>`.

It lives with the schedules, not with calibration, so that sampling with a saved schedule
imports nothing that measures.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .step_list import StepListSchedule

FORMAT = "toca-compile schedule"
VERSION = 1
MODES = ("taylorseer", "fora", "toca")


@dataclass(frozen=True)
class SavedSchedule:
    """A calibrated schedule and the settings it was calibrated with."""

    num_steps: int
    full_steps: tuple[int, ...]
    mode: str = "taylorseer"
    taylor_order: int = 1
    ratio: float = 0.15
    info: dict = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"a schedule file's mode must be one of {list(MODES)}, got {self.mode!r}")
        object.__setattr__(self, "full_steps", self.schedule().full_steps)  # validated, sorted

    def schedule(self) -> StepListSchedule:
        return StepListSchedule(self.num_steps, tuple(self.full_steps), self.ratio if self.mode == "toca" else 0.0)

    def write(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        body = {"format": FORMAT, "version": VERSION, **asdict(self)}
        body["full_steps"] = list(self.full_steps)
        path.write_text(json.dumps(body, indent=1) + "\n")
        return path


def read_schedule_file(path: str | Path) -> SavedSchedule:
    """Load a file written by :meth:`SavedSchedule.write`; a ``ValueError`` names what is wrong."""
    path = Path(path)
    try:
        body = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"schedule file {path} does not exist") from None
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"schedule file {path} is not readable JSON: {error}") from None
    if not isinstance(body, dict) or body.get("format") != FORMAT:
        raise ValueError(f"{path} is not a toca-compile schedule file (no \"format\": \"{FORMAT}\")")
    if body.get("version") != VERSION:
        raise ValueError(f"schedule file {path} has version {body.get('version')!r}; this toca-compile reads {VERSION}")
    try:
        return SavedSchedule(num_steps=body["num_steps"], full_steps=tuple(body["full_steps"]), mode=body["mode"],
                             taylor_order=body.get("taylor_order", 1), ratio=body.get("ratio", 0.15),
                             info=body.get("info", {}))
    except KeyError as error:
        raise ValueError(f"schedule file {path} lacks the field {error}") from None
    except (TypeError, ValueError) as error:
        raise ValueError(f"schedule file {path}: {error}") from None


