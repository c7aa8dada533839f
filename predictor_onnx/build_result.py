"""What one predictor build produced: the pipeline fills it, the model card reads it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class BuildResult:
    """What ``build_predictor`` produced: the folder, evaluation tables and rows, head parity."""

    out_dir: Path
    tables: dict[str, str] = field(default_factory=dict)
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    head_parity: float = 0.0
