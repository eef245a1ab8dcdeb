"""``mtrl-robot arm init``: a first family file for an arm given by its URDF."""

from __future__ import annotations

import argparse
from pathlib import Path

from mtrl_robot.arms.families import family_names, load_family
from mtrl_robot.arms.family_file import draft_family_file
from mtrl_robot.core.atomic import write_atomic

PYBULLET_DATA = "pybullet_data:"  # names a URDF shipped with PyBullet, wherever its data folder is installed


def urdf_argument(text: str) -> Path:
    """A URDF's path; ``pybullet_data:<file>`` is ``<file>`` in PyBullet's data folder (``pybullet_data``)."""
    if not text.startswith(PYBULLET_DATA):
        return Path(text)
    import pybullet_data

    return Path(pybullet_data.getDataPath()) / text.removeprefix(PYBULLET_DATA)


def init(urdf: Path, flange: str, output: Path, base: str | None, name: str | None, force: bool) -> None:
    if output.exists() and not force:
        raise FileExistsError(f"{output} exists; choose another path or replace it with --force")
    text, arm, choice = draft_family_file(urdf, flange, output, base, name, reserved=family_names())
    write_atomic(output, text, verify=load_family)
    print(f"{arm.family}: {arm.dof} joints ({', '.join(arm.joint_names)}), base {arm.base_link}, flange "
          f"{arm.flange_link}")
    print(f"home chosen: [{', '.join(f'{v:g}' for v in choice.q)}] (mean smallest singular value of the flange "
          f"Jacobian around it {choice.sigma_min:.3f} m/rad, {choice.default_sigma_min:.3f} around the URDF's zero "
          f"posture; condition number {choice.condition:.3g})")
    print(f"wrote {output}; use it wherever a family name goes, e.g. mtrl-robot population generate --families "
          f"{output}")


def add_commands(sub: argparse._SubParsersAction) -> None:
    group = sub.add_parser("arm", help="your own arm: a family file from its URDF")
    verbs = group.add_subparsers(dest="action", required=True)
    i = verbs.add_parser("init", help="write a first family file for a URDF, with every choice and its reason")
    i.add_argument("urdf", type=urdf_argument,
                   help=f"the arm's URDF; {PYBULLET_DATA}<file> names one shipped with PyBullet "
                        f"(e.g. {PYBULLET_DATA}kuka_iiwa/model.urdf)")
    i.add_argument("--flange", required=True, help="the link at the end of the chain (the tool flange)")
    i.add_argument("--base", help="the link the chain starts from (default: the URDF's root link)")
    i.add_argument("--name", help="the family's name (default: the output file's stem)")
    i.add_argument("-o", "--output", type=Path, required=True, help="the family file to write (.yaml)")
    i.add_argument("--force", action="store_true", help="replace an existing file")
    i.set_defaults(func=lambda a: init(a.urdf, a.flange, a.output, a.base, a.name, a.force))
