"""``mtrl-robot recordings recover|clean DIR``: the episodes ``demo_recorder`` left unfinished in a folder.

An episode's messages are streamed into a hidden partial folder and become a bag when the episode stops (see
:mod:`mtrl_robot.motions.bag_stream`). A recorder killed outright leaves the partial folder behind: ``recover``
makes a complete bag of every message in it that reached the disk, ``clean`` removes the ones holding no
complete message. Neither touches an episode a running recorder is still writing, and each names every folder
it changes.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from mtrl_robot.motions.bag_stream import PartialLocked, inspect_partial, partial_folders, recover_partial


def _partials(directory: Path) -> list[Path]:
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: no such folder")
    found = partial_folders(directory)
    if not found:
        print(f"{directory}: no unfinished episodes")
    return found


def recover(directory: Path) -> None:
    """Make a bag of each unfinished episode in ``directory``; ``ValueError`` if any could not be."""
    failed = 0
    for folder in _partials(directory):
        try:
            done = recover_partial(folder)
        except (PartialLocked, FileExistsError, ValueError, OSError) as exc:
            print(f"{folder.name}: not recovered: {exc}")
            failed += 1
        else:
            print(f"{folder.name}: {done.messages} messages recovered into {done.bag}")
    if failed:
        raise ValueError(f"{directory}: {failed} unfinished episode(s) not recovered (see above)")


def clean(directory: Path) -> None:
    """Remove the unfinished episodes in ``directory`` that hold no complete message; name the others."""
    for folder in _partials(directory):
        try:
            partial = inspect_partial(folder)
        except (PartialLocked, ValueError, OSError) as exc:
            print(f"{folder.name}: kept: {exc}")
            continue
        if partial.messages:
            print(f"{folder.name}: kept: {partial.messages} messages of {partial.bag.name} can be recovered "
                  f"(mtrl-robot recordings recover {directory})")
        else:
            shutil.rmtree(folder)
            print(f"{folder.name}: removed (no complete message reached the disk)")


def add_commands(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser("recordings", help="recover or clean up episodes a demo_recorder left unfinished")
    verbs = r.add_subparsers(dest="verb", required=True)
    v = verbs.add_parser("recover", help="make a complete bag of each unfinished episode in DIR (what reached "
                                         "the disk), then remove its partial folder")
    v.add_argument("directory", type=Path, metavar="DIR", help="the recorder's output_dir")
    v.set_defaults(func=lambda a: recover(a.directory))
    v = verbs.add_parser("clean", help="remove the unfinished episodes in DIR that hold no complete message")
    v.add_argument("directory", type=Path, metavar="DIR", help="the recorder's output_dir")
    v.set_defaults(func=lambda a: clean(a.directory))
