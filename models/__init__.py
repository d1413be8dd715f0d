"""Shipped detector models, their cards, and the tools that make them.

``models/default/`` holds the default detector (ONNX + card) used by
``analyze``, ``serve`` and ``evaluate`` unless ``--model`` is given.
"""

from __future__ import annotations

from pathlib import Path

from datasets import SHARED_DATA

__all__ = ["DEFAULT_MODEL", "MODELS_DIR", "SHARED_DATA"]

MODELS_DIR = Path(__file__).resolve().parent
DEFAULT_MODEL = MODELS_DIR / "default" / "model.onnx"
