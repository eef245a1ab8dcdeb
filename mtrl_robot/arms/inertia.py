"""Plausible inertia where none is published: a solid rod along the link."""

from __future__ import annotations

import numpy as np

LINK_RADIUS = 0.05  # m, a typical collaborative-arm link


def rod_inertia(mass: float, length: float, radius: float = LINK_RADIUS) -> tuple[float, float, float]:
    """Principal moments (kg·m²) of a solid cylinder; the long axis is the link frame's z."""
    length = max(float(length), radius)
    axial = 0.5 * mass * radius**2
    transverse = mass * (3 * radius**2 + length**2) / 12.0
    return (float(transverse), float(transverse), float(np.maximum(axial, 1e-6)))
