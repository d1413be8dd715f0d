"""Labelled data: import, render, check, merge, pack, and the external sources' snapshots."""

from __future__ import annotations

from pathlib import Path

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
"""The real labelled images beside the checkout (``../shared/data``; read its README)."""
