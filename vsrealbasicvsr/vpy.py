"""Help for `.vpy` scripts: paths as the user typed them.

vspipe (and vspreview) evaluate a script from the script's own folder, but leave `__file__` and
the paths passed with `-a name=value` as they were typed, relative to the folder the command was
started in. `launch_path` turns such a path back into the file the user meant.
"""

from __future__ import annotations

import os
from pathlib import Path


def launch_path(path: str | os.PathLike) -> Path:
    """`path` as typed on the command line that started the script.

    Absolute paths are returned as they are. A relative path is looked up from the folder the
    command was started in (the shell's `$PWD`, which a change of folder inside the process
    does not update), then from the current folder; when it exists in neither, the first
    candidate is returned, so that the caller's error names the path the user meant.
    """
    path = Path(path)
    if path.is_absolute():
        return path
    candidates = [Path(os.environ["PWD"]) / path] if os.environ.get("PWD") else []
    candidates.append(Path.cwd() / path)
    return next((candidate for candidate in candidates if candidate.exists()), candidates[0])


def script_folder(script_file: str | os.PathLike) -> Path:
    """The folder of the running script, from its `__file__`."""
    return launch_path(script_file).parent
