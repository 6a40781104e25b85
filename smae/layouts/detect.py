"""Which data-set layout a folder looks like, for messages about a folder given to the wrong task."""
from __future__ import annotations

from pathlib import Path

from . import davis, jhmdb, vip, youtube_vos

# task name -> layout module
LAYOUTS = {"davis": davis, "jhmdb": jhmdb, "vip": vip, "vos": youtube_vos}


def other_layout(root: Path, task: str) -> str | None:
    """'ROOT looks like a DAVIS-2017 folder (--task davis), not a JHMDB folder' when `root` has the
    marks of another task's layout and not of `task`'s; else None."""
    root = Path(root)
    if LAYOUTS[task].looks_like(root):
        return None
    matches = [name for name, layout in LAYOUTS.items() if name != task and layout.looks_like(root)]
    if not matches:
        return None
    names = " or ".join(f"a {LAYOUTS[name].NAME} folder (--task {name})" for name in matches)
    return f"{root} looks like {names}, not a {LAYOUTS[task].NAME} folder"
