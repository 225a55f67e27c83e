"""options.UpscaleOptions is the one home of Upscale's arguments: the filter, upscale(), the
engine, the command line's flags and the README's table are all made from (or pinned to) it."""

import argparse
import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest
import vapoursynth as vs

import vsrealbasicvsr
from vsrealbasicvsr import options

NAMES = [option.name for option in options.fields()]
README = Path(__file__).resolve().parent.parent / "README.md"


def test_the_twelve_arguments_live_in_one_dataclass():
    assert NAMES[:12] == [
        "model",
        "checkpoint",
        "max_seq_len",
        "device",
        "precision",
        "scene_split",
        "overlap",
        "tile",
        "tile_overlap",
        "offload",
        "max_memory",
        "compile",
    ]
    defaults = options.UpscaleOptions()
    assert (defaults.max_seq_len, defaults.overlap, defaults.tile, defaults.tile_overlap) == (30, 8, (0, 0), 16)


def test_importing_options_loads_no_torch():
    code = "import sys, vsrealbasicvsr.options; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"max_seq_len": -1}, "max_seq_len must be >= 0, not -1"),
        ({"overlap": -1}, "overlap must be >= 0"),
        ({"tile_overlap": -2}, "tile_overlap must be >= 0"),
        ({"max_memory": 0}, "max_memory must be a positive number"),
        ({"tile": [64, 64, 64]}, "tile must be an int or [width, height]"),
        ({"tile": "big"}, "tile must be an int or [width, height]"),
        ({"tile": (32, 256)}, "smaller than the minimum of 64 px"),
        ({"precision": "fp8"}, "unknown precision 'fp8'; use one of fp32, fp16, bf16"),
        ({"device": "tpu"}, "unknown device 'tpu'"),
        ({"device": 3}, "device must be a string"),
        ({"max_seq_len": 2.5}, "max_seq_len must be an int"),
        ({"compile": "yes"}, "compile must be True or False"),
        ({"frames": 3}, "no argument named frames"),
    ],
)
def test_bad_values_say_what_to_do(arguments, message):
    with pytest.raises(ValueError) as error:
        options.UpscaleOptions.of(**arguments)
    assert str(error.value).startswith("Upscale: ") and "; " in str(error.value)
    assert message in str(error.value)


def test_values_take_one_checked_form():
    checked = options.UpscaleOptions.of(tile=[96], checkpoint=Path("a.pth"), offload=1, precision=None)
    assert (checked.tile, checked.checkpoint, checked.offload, checked.precision) == ((96, 96), "a.pth", True, None)
    assert options.UpscaleOptions.of(tile=-1).tile == (-1, -1)


def test_the_filter_registers_the_options_signature():
    signature = vs.core.rbvsr.Upscale.signature
    assert options.filter_signature().startswith("clip:vnode;")
    for name in NAMES:
        assert re.search(rf"\b{name}:(int|data|int\[\]):opt", signature), (name, signature)
    assert signature.replace(" ", "") == options.filter_signature().replace(" ", "")


def test_unknown_arguments_are_a_vs_error_at_call_time():
    clip = vs.core.std.BlankClip(width=16, height=16, format=vs.RGBS, length=1)
    with pytest.raises(vs.Error, match="frames"):
        vs.core.rbvsr.Upscale(clip, frames=3)
    with pytest.raises(vs.Error, match="^Upscale: no argument named frames; use model, checkpoint"):
        vsrealbasicvsr.upscale(clip, frames=3)


def test_upscale_signature_and_docstring_come_from_the_options():
    parameters = inspect.signature(vsrealbasicvsr.upscale).parameters
    assert list(parameters) == ["clip", *NAMES]
    for option in options.fields():
        assert parameters[option.name].default == option.default
        assert re.search(rf"^ {{8}}{option.name}: ", vsrealbasicvsr.upscale.__doc__, re.MULTILINE), option.name
    assert "Default: 30." in vsrealbasicvsr.upscale.__doc__


def test_command_line_flags_cover_every_option():
    parser = argparse.ArgumentParser(prog="upscale")
    options.add_arguments(parser)
    help_text = " ".join(parser.format_help().split())
    for option in options.fields():
        assert options.flag(option.name) in help_text, option.name
    assert "--no-scene-split" in help_text and "(default: 30)" in help_text

    defaults = options.from_arguments(parser.parse_args([]))
    assert options.UpscaleOptions.of(**defaults) == options.UpscaleOptions()
    given = options.from_arguments(
        parser.parse_args(
            [
                "--model",
                "basicvsr-reds4",
                "--checkpoint",
                "w.pth",
                "--max-seq-len",
                "12",
                "--device",
                "cpu",
                "--precision",
                "bf16",
                "--no-scene-split",
                "--overlap",
                "4",
                "--tile",
                "128",
                "96",
                "--tile-overlap",
                "8",
                "--offload",
                "--max-memory",
                "1000000",
                "--compile",
            ]
        )
    )
    assert (
        given.items()
        >= {
            "model": "basicvsr-reds4",
            "checkpoint": "w.pth",
            "max_seq_len": 12,
            "device": "cpu",
            "precision": "bf16",
            "scene_split": False,
            "overlap": 4,
            "tile": [128, 96],
            "tile_overlap": 8,
            "offload": True,
            "max_memory": 1000000,
            "compile": True,
        }.items()
    )
    assert options.from_arguments(parser.parse_args(["--tile", "off"]))["tile"] == -1
    with pytest.raises(ValueError, match="^--tile 1 2 3 is not a tile size; use --tile W H"):
        options.from_arguments(parser.parse_args(["--tile", "1", "2", "3"]))


def test_command_line_takes_a_chosen_subset():
    parser = argparse.ArgumentParser(prog="upscale")
    options.add_arguments(parser, names=["model", "tile"])
    assert set(vars(parser.parse_args([]))) == {"model", "tile"}
    assert options.from_arguments(parser.parse_args([])) == {"model": "realbasicvsr", "tile": 0}


def test_the_readme_table_lists_every_option_with_its_default():
    rows = dict(re.findall(r"^\| `(\w+)` \| ([^|]*) \|", README.read_text(), re.MULTILINE))
    for option in options.fields():
        assert option.name in rows, option.name
        if option.default is not None:
            assert rows[option.name].strip() == f"`{options.describe_default(option)}`", option.name
        else:
            assert rows[option.name].strip() and "`" not in rows[option.name], option.name


def test_the_upscale_command_takes_every_option_as_a_flag():
    from vsrealbasicvsr.frontends import cli

    help_text = " ".join(cli.build_parser()._subparsers._group_actions[0].choices["upscale"].format_help().split())
    for option in options.fields():
        if option.name != "scene_split":  # the command's --no-scene-detect skips the detection instead
            assert options.flag(option.name) in help_text, option.name
    assert "--no-scene-detect" in help_text and "--scene-split" not in help_text
