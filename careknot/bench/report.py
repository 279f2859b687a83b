"""Figures from samples, the machine they were measured on, and writing them out."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

import numpy as np


def latency_figures(samples_ms: list[float], prefix: str) -> dict[str, float]:
    a = np.asarray(samples_ms)
    return {
        f"{prefix}_p50_ms": round(float(np.percentile(a, 50)), 2),
        f"{prefix}_p90_ms": round(float(np.percentile(a, 90)), 2),
        f"{prefix}_p99_ms": round(float(np.percentile(a, 99)), 2),
        f"{prefix}_max_ms": round(float(a.max()), 2),
        f"{prefix}_mean_ms": round(float(a.mean()), 2),
    }


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }


def write(output: str, name: str, figures: dict[str, Any]) -> Path:
    path = Path(output)
    path.mkdir(parents=True, exist_ok=True)
    target = path / name
    target.write_text(json.dumps(figures, indent=2) + "\n")
    return target
