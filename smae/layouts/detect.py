"""Which data-set layout a folder looks like, for messages about a folder given to the wrong task."""
from __future__ import annotations

from pathlib import Path

from . import davis, jhmdb, vip, youtube_vos

# task name -> layout module
LAYOUTS = {"davis": davis, "jhmdb": jhmdb, "vip": vip, "vos": youtube_vos}


def describe_folder(root: Path, task: str) -> str:
    """'ROOT looks like a DAVIS-2017 folder: use --task davis' or what the task expects."""
    matches = [name for name, layout in LAYOUTS.items() if name != task and layout.looks_like(Path(root))]
    if matches and not LAYOUTS[task].looks_like(Path(root)):
        names = " or ".join(f"a {LAYOUTS[name].NAME} folder (--task {name})" for name in matches)
        return f"{root} looks like {names}, not a {LAYOUTS[task].NAME} folder"
    return f"{root} is not a complete {LAYOUTS[task].NAME} folder (see smae.layouts.{LAYOUTS[task].__name__.rsplit('.', 1)[1]})"
