"""Test audio."""

from __future__ import annotations

import numpy as np

#: 1 s of 440 Hz at 8 kHz, 16-bit.
TONE = (np.sin(np.linspace(0, 2 * np.pi * 440, 8000)) * 12000).astype(np.int16)
