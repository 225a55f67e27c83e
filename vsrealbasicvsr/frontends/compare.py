"""A frame of a video upscaled 4x by bicubic next to the same frame of its upscale, as one PNG:
`vsrealbasicvsr compare`.

The picture is a crop at the upscale's full resolution (nothing is scaled down, so what a viewer
sees at 100 % is what the video holds): on the left the input frame upscaled 4x with bicubic
(Catmull-Rom, b=0 c=1/2: the "bicubic" of image editors and of super-resolution papers), on the
right the upscaled frame, each half under its label (beside the output of a restoration model,
which keeps the size, the input frame as it is). Both videos are read with bestsource and
converted to RGB with their own colour properties, as `vsrealbasicvsr upscale` reads its input.
Labels and PNG come from Pillow, whose built-in font needs no font files.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

import numpy as np
import vapoursynth as vs

from ..job import Colour, UpscaleError, open_video_file
from ..safe_files import new_file, place_new
from ..weights.registry import MODELS

# The band above the picture that holds the labels, the gap between the halves, in pixels.
LABEL_HEIGHT, DIVIDER = 32, 4
FONT_SIZE = 20
BACKGROUND, TEXT_COLOUR = (32, 32, 32), (255, 255, 255)


class CompareError(Exception):
    """A problem the user can fix; the message says how."""


def parse_crop(text: str) -> tuple[int, int, int, int]:
    """`WIDTHxHEIGHT+LEFT+TOP` -> (width, height, left, top)."""
    match = re.fullmatch(r"(\d+)x(\d+)\+(\d+)\+(\d+)", text)
    if match is None:
        raise CompareError(f"--crop {text} is not a crop; write it as WIDTHxHEIGHT+LEFT+TOP, e.g. 480x270+0+0")
    return tuple(int(group) for group in match.groups())


def open_video(path: Path) -> vs.VideoNode:
    """`path` read as the job reads its input (`job.open_video_file`), of one size and format."""
    if not path.is_file():
        raise CompareError(f"{path} does not exist; check the path")
    try:
        clip = open_video_file(path)
    except UpscaleError as error:
        raise CompareError(str(error)) from None
    if clip.format is None or clip.width == 0 or clip.format.color_family not in (vs.YUV, vs.RGB):
        raise CompareError(
            f"{path} changes size or format, or is not YUV or RGB; pass a video of one YUV or RGB format"
        )
    return clip


def to_rgbs(clip: vs.VideoNode) -> vs.VideoNode:
    """RGB in floats; YUV with the matrix and range of its frame properties (`Colour.of`)."""
    if clip.format.color_family == vs.RGB:
        return vs.core.resize.Point(clip, format=vs.RGBS)
    colour = Colour.of(clip)
    return vs.core.resize.Bicubic(clip, format=vs.RGBS, matrix_in=colour.matrix, range_in=colour.range)


def rgb_array(clip: vs.VideoNode, frame: int) -> np.ndarray:
    """Frame `frame` of an RGBS clip as an (h, w, 3) uint8 array."""
    rgb24 = vs.core.resize.Point(clip, format=vs.RGB24)
    planes = rgb24.get_frame(frame)
    return np.stack([np.asarray(planes[plane]) for plane in range(3)], axis=-1)


def bicubic(clip: vs.VideoNode, scale: int) -> vs.VideoNode:
    return vs.core.resize.Bicubic(
        clip, width=scale * clip.width, height=scale * clip.height, filter_param_a=0, filter_param_b=0.5
    )


def output_scale(source: vs.VideoNode, upscaled: vs.VideoNode) -> int | None:
    """The models' scale (x4, or x1 for restoration models) that makes `source` `upscaled`'s size."""
    for scale in sorted({info.scale for info in MODELS.values()}, reverse=True):
        if (upscaled.width, upscaled.height) == (scale * source.width, scale * source.height):
            return scale
    return None


def side_by_side(left: np.ndarray, right: np.ndarray, labels: tuple[str, str]) -> np.ndarray:
    """Two (h, w, 3) pictures of one size side by side, DIVIDER apart, each under its label."""
    from PIL import Image, ImageDraw, ImageFont

    height, width, _ = left.shape
    canvas = np.empty((LABEL_HEIGHT + height, 2 * width + DIVIDER, 3), np.uint8)
    canvas[:] = BACKGROUND
    font = ImageFont.load_default(size=FONT_SIZE)
    for x, picture, label in ((0, left, labels[0]), (width + DIVIDER, right, labels[1])):
        # Each label on a band of its half's width: a long label is cut, never drawn over the other half.
        band = Image.new("RGB", (width, LABEL_HEIGHT), BACKGROUND)
        ImageDraw.Draw(band).text((8, LABEL_HEIGHT // 2), label, font=font, fill=TEXT_COLOUR, anchor="lm")
        canvas[:LABEL_HEIGHT, x : x + width] = np.asarray(band)
        canvas[LABEL_HEIGHT:, x : x + width] = picture
    return canvas


def write_png(picture: np.ndarray, path: Path, overwrite: bool = False) -> None:
    """Writes into a new file of ours first (O_EXCL|O_NOFOLLOW, under a fresh name: never through
    a link, nor over a file of the user's), then gives it the final name: over what is there with
    `overwrite`, else only where nothing is (CompareError when something appeared meanwhile)."""
    from PIL import Image

    descriptor, partial = new_file(path.parent, f".{path.name}.", ".part")
    try:
        with os.fdopen(descriptor, "wb") as file:
            Image.fromarray(picture).save(file, format="PNG", optimize=True)
        if overwrite:
            os.replace(partial, path)
        else:
            place_new(partial, path)
    except FileExistsError:
        raise CompareError(f"{path} exists; pass --overwrite to replace it") from None
    finally:
        partial.unlink(missing_ok=True)


def compare(
    input_path: Path,
    upscaled_path: Path,
    output: Path,
    frame: int | None = None,
    crop: tuple[int, int, int, int] | None = None,
    start: int = 0,
    label: str | None = None,
    overwrite: bool = False,
) -> tuple[int, tuple[int, int, int, int]]:
    """Writes the comparison PNG of frame `frame` of `upscaled_path` (frame `start + frame` of
    `input_path`) to `output`. The crop is in upscaled pixels (default: the centre, half the width
    and half the height). The input is scaled as the model scaled it (bicubic x4, or as it is
    beside an x1 model's output); `label` names the output (default "upscaled xN"). An existing
    `output` is replaced only with `overwrite`. Returns the frame and the crop used."""
    source, upscaled = open_video(input_path), open_video(upscaled_path)
    scale = output_scale(source, upscaled)
    if scale is None:
        raise CompareError(
            f"{upscaled_path} is {upscaled.width}x{upscaled.height}, not 4x (nor, from a restoration model, 1x) "
            f"the {source.width}x{source.height} of {input_path}; pass the input and the output of "
            "one `vsrealbasicvsr upscale`"
        )
    if not 0 <= start < source.num_frames:
        raise CompareError(
            f"--start {start} is not a frame of {input_path}; pass the upscale's --start "
            f"(0 <= start < {source.num_frames})"
        )
    frames = min(upscaled.num_frames, source.num_frames - start)
    if frame is None:
        frame = frames // 2
    if not 0 <= frame < frames:
        raise CompareError(f"--frame {frame} is not a frame of both videos; use 0 <= frame < {frames}")
    if crop is None:
        crop = (upscaled.width // 2, upscaled.height // 2, upscaled.width // 4, upscaled.height // 4)
    width, height, left, top = crop
    if width == 0 or height == 0 or left + width > upscaled.width or top + height > upscaled.height:
        raise CompareError(
            f"--crop {width}x{height}+{left}+{top} does not fit the upscaled "
            f"{upscaled.width}x{upscaled.height}; choose a crop inside it"
        )
    region = np.s_[top : top + height, left : left + width]
    scaled = rgb_array(bicubic(to_rgbs(source), scale), start + frame)[region]
    ours = rgb_array(to_rgbs(upscaled), frame)[region]
    labels = (f"bicubic x{scale}" if scale > 1 else "input", label or f"upscaled x{scale}")
    write_png(side_by_side(scaled, ours, labels), output, overwrite)
    return frame, crop


# -- the command --------------------------------------------------------------------------------


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Registers `compare` on the command's subparsers; the parser's `func` runs it."""
    parser = subparsers.add_parser(
        "compare",
        help="a PNG of a frame: the input upscaled by bicubic next to the upscaled video",
        description="Write a PNG of one frame, side by side at the upscale's full resolution: INPUT "
        "upscaled 4x by bicubic (left) and UPSCALED (right), cropped, each half labelled.",
    )
    parser.add_argument("input", type=Path, help="the video that was upscaled")
    parser.add_argument("upscaled", type=Path, help="its upscale (from `vsrealbasicvsr upscale INPUT UPSCALED`)")
    parser.add_argument(
        "output", type=Path, nargs="?", help="the PNG to write (default: UPSCALED's name with _compare.png)"
    )
    parser.add_argument("--frame", type=int, help="frame of UPSCALED (default: the middle one)")
    parser.add_argument(
        "--crop",
        metavar="WxH+L+T",
        help="the part to show, in upscaled pixels (default: the centre, half the width and half the height)",
    )
    parser.add_argument(
        "--start", type=int, default=0, help="the frame of INPUT where UPSCALED begins (upscale's --start; default 0)"
    )
    parser.add_argument("--label", default="upscaled x4", help="the right half's label (default: upscaled x4)")
    parser.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    parser.set_defaults(func=main)
    return parser


def main(args: argparse.Namespace) -> int:
    """Runs `vsrealbasicvsr compare`; problems the user can fix are one line on stderr, exit 1."""
    output = args.output or args.upscaled.with_name(args.upscaled.stem + "_compare.png")
    try:
        if output.suffix.lower() != ".png":
            raise CompareError(f"{output} is not a .png file name; name the output *.png")
        if not output.resolve().parent.is_dir():
            raise CompareError(f"the folder of {output} does not exist; create it first, or choose another output")
        if os.path.lexists(output) and not args.overwrite:
            raise CompareError(f"{output} exists; pass --overwrite to replace it")
        crop = parse_crop(args.crop) if args.crop else None
        frame, (width, height, left, top) = compare(
            args.input, args.upscaled, output, args.frame, crop, args.start, args.label, args.overwrite
        )
    except (CompareError, UpscaleError) as error:
        print(f"vsrealbasicvsr compare: error: {error}", file=sys.stderr)
        return 1
    print(f"{output}: frame {frame}, crop {width}x{height}+{left}+{top}, bicubic x4 | {args.label}")
    return 0
