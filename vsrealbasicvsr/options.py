"""The arguments of `Upscale`: their one home.

`UpscaleOptions` declares each argument once, with its type, default and meaning, and checks
what can be checked without torch or a clip. Everything else is made from it:

- the native filter's argument list (`filter_signature`, read by rbvsr.c at plugin init);
- `vsrealbasicvsr.upscale`'s signature and the Args part of its docstring (`parameters`,
  `docstring_args`);
- the engine's defaults and checks (`plan.Settings.of`, `Engine`: `UpscaleOptions.of`);
- the command line's flags and their --help (`add_arguments`, `from_arguments`).
- the web page's form (`frontends/web/jobs.py`, `form`): names, choices, minimums, help.

Adding an argument is one field here plus its implementation (in the engine, or the filter for
what the filter reads back from the engine). The README's argument table is pinned to these
fields by tests/test_options.py. Import-light: no torch, no VapourSynth.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import numbers
import os
import re
import textwrap
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .engine import memory
from .weights import registry

PRECISIONS = ("fp32", "fp16", "bf16")
# What runs the network's steps; each is a module of vsrealbasicvsr/backends/ of that name.
BACKENDS = ("torch", "openvino")
TILE_AUTO, TILE_OFF = 0, -1
# cuda for torch, gpu (an Intel GPU) for OpenVINO; which backend has which: backends/. The
# numbered ones take ":N" too.
NUMBERED_DEVICES = ("cuda", "gpu")
DEVICES = ("auto", "cpu", *NUMBERED_DEVICES)
_DEVICE_FORM = re.compile(rf"auto|cpu|({'|'.join(NUMBERED_DEVICES)})(:\d+)?")

# How each kind of argument is declared to VapourSynth (registerFunction's types).
_FILTER_TYPES = {"text": "data", "path": "data", "int": "int", "flag": "int", "tile": "int[]"}


def _about(
    kind: str,
    help: str,
    *,
    none: str = "",
    flag_help: str = "",
    metavar: str | None = None,
    choices: tuple[str, ...] = (),
    suggestions: tuple[str, ...] = (),
    minimum: int | None = None,
    below: str = "",
) -> dict[str, Any]:
    """A field's metadata. kind: text, path, int, flag or tile (how it is checked and passed
    on); help: its meaning, in the words of a Python call; none: what a None default means;
    flag_help: the command line's words where they differ; metavar: the flag's value; choices:
    the only values a text takes; suggestions: common values of a text of another form;
    minimum: the smallest int (a tile's smallest side); below: the error's words for a value
    under it, with {minimum} and {value}."""
    return {
        "kind": kind,
        "help": help,
        "none": none,
        "flag_help": flag_help,
        "metavar": metavar,
        "choices": choices,
        "suggestions": suggestions,
        "minimum": minimum,
        "below": below,
    }


@dataclass(frozen=True)
class UpscaleOptions:
    """The arguments of `Upscale`, checked (`of`); `tile` is held as (width, height)."""

    model: str = field(
        default=registry.DEFAULT_MODEL,
        metadata=_about("text", "Registered model name (`vsrealbasicvsr models` lists them)."),
    )
    checkpoint: str | os.PathLike | None = field(
        default=None,
        metadata=_about(
            "path",
            "Path of a checkpoint file to load instead of the model's installed weights.",
            none="the model's installed weights",
            metavar="FILE",
        ),
    )
    max_seq_len: int = field(
        default=30,
        metadata=_about(
            "int",
            "Frames computed together in one window; 0 = automatic, the engine picks what fits in "
            "memory. Longer windows give the recurrence more context and take more memory. Clamped to the "
            "clip's length.",
            metavar="N",
            minimum=0,
            below="must be >= {minimum}, not {value}; 0 = automatic, else the number of frames computed together",
        ),
    )
    device: str = field(
        default="auto",
        metadata=_about(
            "text",
            '"auto" (a GPU when there is one, else the CPU), "cpu", "cuda", "cuda:1", ...; with '
            'backend="openvino": "auto" (the CPU), "cpu", or "gpu", "gpu:1", ... for an Intel GPU '
            "(not tested here).",
            flag_help="auto, cpu, cuda, cuda:N; with --backend openvino: auto (the CPU), cpu, gpu, gpu:N (Intel GPUs, "
            "not tested here)",
            suggestions=DEVICES,
        ),
    )
    precision: str | None = field(
        default=None,
        metadata=_about(
            "text",
            '"fp32", "fp16" (CUDA only) or "bf16"; SPyNet always runs in fp32.',
            none="fp16 for RGBH clips on CUDA, else fp32",
            choices=PRECISIONS,
        ),
    )
    scene_split: bool = field(
        default=True,
        metadata=_about(
            "flag",
            "Split windows at scene cuts (frames whose `_SceneChangePrev` is 1, e.g. from "
            "`core.scxvid.Scxvid`), so frames of different scenes never see each other.",
            flag_help="split windows at frames whose _SceneChangePrev is 1",
        ),
    )
    overlap: int = field(
        default=8,
        metadata=_about(
            "int",
            "Context frames computed on each side of a window and then dropped, so frames at window "
            "edges see their neighbours; they never cross a scene cut.",
            metavar="N",
            minimum=0,
            below="must be >= {minimum}, not {value}; it counts context frames on each side",
        ),
    )
    tile: int | tuple[int, int] | list[int] = field(
        default=TILE_AUTO,
        metadata=_about(
            "tile",
            "Spatial tile size in input pixels: one int or [width, height], at least "
            f"{memory.MIN_TILE}; 0 = automatic (tiles only when a window, its context frames included, does "
            "not fit in memory), -1 = never tile.",
            flag_help="tile size in input pixels: W H, auto (only when a window does not fit in memory) or off",
            minimum=memory.MIN_TILE,
        ),
    )
    tile_overlap: int = field(
        default=16,
        metadata=_about(
            "int",
            "Pixels each tile computes beyond its edges, discarded when stitching; more is closer "
            "to untiled output, at a cost.",
            metavar="PX",
            minimum=0,
            below="must be >= {minimum}, not {value}; it counts pixels",
        ),
    )
    offload: bool = field(
        default=False,
        metadata=_about(
            "flag",
            "Keep the backward-propagation features in host memory instead of on the GPU: "
            "slower, uses less GPU memory (CUDA; nothing changes on the CPU).",
        ),
    )
    max_memory: int | None = field(
        default=None,
        metadata=_about(
            "int",
            "Memory budget of the engine on its device, in bytes.",
            none="what is free when the filter is created",
            metavar="BYTES",
            minimum=1,
            below="must be a positive number of bytes, not {value}; leave it out to use what is free",
        ),
    )
    compile: bool = field(
        default=False,
        metadata=_about("flag", "Compile the model with `torch.compile` (CUDA only): slow start, faster frames."),
    )
    keyframe_stride: int | None = field(
        default=None,
        metadata=_about(
            "int",
            "IconVSR models: every N-th frame of a window, counted from its first (context "
            "included), and its last, get EDVR's refill features; smaller is slower and may be sharper.",
            none="the network's own, 5",
            metavar="N",
            minimum=1,
            below="must be >= {minimum}, not {value}; it counts frames between keyframes",
        ),
    )
    backend: str = field(
        default="torch",
        metadata=_about(
            "text",
            'What runs the network: "torch" (PyTorch) or "openvino" (OpenVINO, CPU or Intel GPU, '
            'fp32; needs `pip install "vsrealbasicvsr[openvino]"`): the same network and weights, the same '
            "windows and tiles.",
            flag_help="torch or openvino (OpenVINO: CPU or Intel GPU, fp32)",
            choices=BACKENDS,
        ),
    )

    @classmethod
    def of(cls, **arguments: Any) -> UpscaleOptions:
        """The options from keyword arguments as a call passes them; None means left out.
        ValueError "Upscale: <what>; <what to do>" for an unknown name or a bad value."""
        names = {option.name for option in fields()}
        unknown = sorted(set(arguments) - names)
        if unknown:
            raise ValueError(
                f"Upscale: no argument named {', '.join(unknown)}; use {', '.join(option.name for option in fields())}"
            )
        return cls(**{name: value for name, value in arguments.items() if value is not None})

    def __post_init__(self) -> None:
        for option in fields():
            value = _checked(option, getattr(self, option.name))
            object.__setattr__(self, option.name, value)  # the checked form: frozen to everyone else


def fields() -> tuple[dataclasses.Field, ...]:
    """The options in the order of the filter's arguments."""
    return dataclasses.fields(UpscaleOptions)


def default(name: str) -> Any:
    """The default of option `name` as a call writes it (tile: 0, not (0, 0))."""
    return next(option.default for option in fields() if option.name == name)


def without_defaults(arguments: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments that differ from their option's default (None is left out): what a job
    records, so that an option added later, or a default written out, is the same job."""
    return {name: value for name, value in arguments.items() if value is not None and value != default(name)}


# -- checks -----------------------------------------------------------------------------------


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral)


def _checked(option: dataclasses.Field, value: Any) -> Any:
    """value in its checked form, or ValueError "Upscale: ..."."""
    name, kind = option.name, option.metadata["kind"]
    if value is None:
        if option.default is None:
            return None
        raise ValueError(f"Upscale: {name} must not be None; leave it out for its default ({option.default!r})")
    if kind == "path":
        if not isinstance(value, (str, os.PathLike)):
            raise ValueError(f"Upscale: {name} must be a path, not {type(value).__name__}; pass a file name")
        return os.fspath(value)
    if kind == "text":
        if not isinstance(value, str):
            raise ValueError(
                f"Upscale: {name} must be a string, not {type(value).__name__}; "
                f"e.g. {name}={option.default or PRECISIONS[0]!r}"
            )
        return _checked_text(option, value)
    if kind == "flag":
        if not _is_int(value):
            raise ValueError(f"Upscale: {name} must be True or False, not {value!r}; pass {name}=True or False")
        return bool(value)
    if kind == "tile":
        return _checked_tile(value, option.metadata["minimum"])
    if not _is_int(value) or isinstance(value, bool):
        raise ValueError(f"Upscale: {name} must be an int, not {value!r}; pass a whole number")
    return _checked_int(option, int(value))


def _checked_text(option: dataclasses.Field, value: str) -> str:
    name, choices = option.name, option.metadata["choices"]
    if name == "device" and not _DEVICE_FORM.fullmatch(value):
        raise ValueError(
            f'Upscale: unknown device {value!r}; use "auto", "cpu", "cuda" or "cuda:N" '
            '("gpu" or "gpu:N" with backend="openvino")'
        )
    if choices and value not in choices:
        raise ValueError(f"Upscale: unknown {name} {value!r}; use one of {', '.join(choices)}")
    return value


def _checked_int(option: dataclasses.Field, value: int) -> int:
    minimum = option.metadata["minimum"]
    if minimum is not None and value < minimum:
        raise ValueError(f"Upscale: {option.name} " + option.metadata["below"].format(minimum=minimum, value=value))
    return value


def _checked_tile(tile: Any, minimum: int) -> tuple[int, int]:
    """(w, h) from one int or [width, height]: (0, 0) automatic, (-1, -1) off, or a size of at
    least `minimum` each way (the engine clamps it to the frame)."""
    if _is_int(tile):
        tile = (tile, tile)
    if (
        isinstance(tile, (str, bytes))
        or not isinstance(tile, Iterable)
        or len(tile := tuple(tile)) not in (1, 2)
        or not all(_is_int(v) for v in tile)
    ):
        raise ValueError(
            f"Upscale: tile must be an int or [width, height], not {tile!r}; "
            "e.g. tile=[256, 256], 0 = automatic, -1 = off"
        )
    tile_w, tile_h = (int(tile[0]), int(tile[-1]))
    if (tile_w, tile_h) in ((TILE_AUTO, TILE_AUTO), (TILE_OFF, TILE_OFF)):
        return tile_w, tile_h
    if min(tile_w, tile_h) < minimum:
        raise ValueError(
            f"Upscale: tile {[tile_w, tile_h]} is smaller than the minimum of {minimum} px; "
            f"use tiles of at least {minimum}x{minimum}, 0 (automatic) or -1 (off)"
        )
    return tile_w, tile_h


# -- the native filter --------------------------------------------------------------------------


def filter_signature() -> str:
    """The argument string of `core.rbvsr.Upscale` (VapourSynth's registerFunction): the clip,
    then every option, optional. rbvsr.c registers it at plugin init."""
    return "clip:vnode;" + "".join(
        f"{option.name}:{_FILTER_TYPES[option.metadata['kind']]}:opt;" for option in fields()
    )


# -- vsrealbasicvsr.upscale ---------------------------------------------------------------------


def parameters() -> list[inspect.Parameter]:
    """The options as keyword-only `inspect.Parameter`s, with their defaults and types."""
    hints = typing.get_type_hints(UpscaleOptions)
    return [
        inspect.Parameter(
            option.name, inspect.Parameter.KEYWORD_ONLY, default=option.default, annotation=hints[option.name]
        )
        for option in fields()
    ]


def describe_default(option: dataclasses.Field) -> str:
    """The default as documentation writes it."""
    if option.default is None:
        return option.metadata["none"]
    if isinstance(option.default, str):
        return f'"{option.default}"'
    return repr(option.default)


def docstring_args(indent: int = 8) -> str:
    """One Google-style `name: meaning (default ...)` entry per option, wrapped at 100 columns."""
    lines = []
    for option in fields():
        text = f"{option.name}: {option.metadata['help']} Default: {describe_default(option)}."
        lines += textwrap.wrap(text, 100, initial_indent=" " * indent, subsequent_indent=" " * (indent + 4))
    return "\n".join(lines)


# -- the command line ---------------------------------------------------------------------------


def flag(name: str) -> str:
    """The command line's flag of option `name`: --max-seq-len for max_seq_len."""
    return "--" + name.replace("_", "-")


def add_arguments(parser: argparse.ArgumentParser, names: Iterable[str] | None = None) -> None:
    """Adds a flag for each option in `names` (default: all) to parser, with the option's default
    and meaning as --help. Tiles: --tile W H, --tile auto or --tile off; flags: --scene-split and
    --no-scene-split. `from_arguments` reads them back."""
    by_name = {option.name: option for option in fields()}
    for name in by_name if names is None else names:
        option = by_name[name]
        kind, meaning = option.metadata["kind"], option.metadata["flag_help"] or option.metadata["help"]
        help_text = f"{meaning} (default: {describe_default(option)})"
        if kind == "flag":
            parser.add_argument(
                flag(name),
                action=argparse.BooleanOptionalAction,
                default=option.default,
                help=help_text.replace("%", "%%"),
            )
        elif kind == "tile":
            parser.add_argument(
                flag(name), nargs="+", default=["auto"], metavar=("W", "H"), help=f"{meaning} (default: auto)"
            )
        else:
            parser.add_argument(
                flag(name),
                type=int if kind == "int" else str,
                default=option.default,
                choices=option.metadata["choices"] or None,
                metavar=option.metadata["metavar"],
                help=help_text.replace("%", "%%"),
            )


def from_arguments(args: argparse.Namespace | Mapping[str, Any]) -> dict[str, Any]:
    """The options `add_arguments` added to a parser, from its parsed `args`, as keyword
    arguments of `upscale` (None left out). ValueError "<what>; <what to do>" (no "Upscale: ":
    the command prefixes its own name) for a --tile that is not a tile."""
    values = vars(args) if isinstance(args, argparse.Namespace) else dict(args)
    result = {}
    for option in fields():
        if values.get(option.name) is None:
            continue
        value = values[option.name]
        result[option.name] = _tile_of_words(value) if option.metadata["kind"] == "tile" else value
    return result


def _tile_of_words(words: list[str]) -> int | list[int]:
    if words == ["auto"]:
        return TILE_AUTO
    if words == ["off"]:
        return TILE_OFF
    if len(words) in (1, 2) and all(word.isdigit() for word in words):
        return [int(word) for word in words] if len(words) == 2 else int(words[0])
    raise ValueError(
        f"{flag('tile')} {' '.join(words)} is not a tile size; "
        f"use {flag('tile')} W H, {flag('tile')} auto or {flag('tile')} off"
    )
