"""Which lifecycle state a node that moves an arm may take by itself at start-up: up to ``active`` on this
package's simulated arm; on a real arm at most ``inactive`` (configured, sending nothing) until a person
activates it."""

from __future__ import annotations

from mtrl_robot.hardware.presets import HardwarePreset

START_STATES = ("active", "inactive", "unconfigured")  # highest first


def start_state(requested: str, preset: HardwarePreset) -> str:
    """The state a node asked to reach ``requested`` (one of ``START_STATES``) at start-up takes with ``preset``."""
    if requested not in START_STATES:
        raise ValueError(f"start state {requested!r} is not one of {', '.join(START_STATES)}")
    if requested == "active" and not preset.simulated:
        return "inactive"
    return requested
