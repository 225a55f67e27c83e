"""The clip graph of a job and its colour (shared with examples/upscale_yuv.vpy):

source -> scene cuts (scxvid) -> RGBS -> core.rbvsr.Upscale -> the source's YUV format
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import vapoursynth as vs

from .errors import UpscaleError
from .source import frame_bytes, window_frames

SCENE_PROPS = ["_SceneChangePrev", "_SceneChangeNext"]

# VapourSynth's colour enums (ITU-T H.273 codes) -> ffmpeg's names.
MATRICES = {
    0: "gbr",
    1: "bt709",
    4: "fcc",
    5: "bt470bg",
    6: "smpte170m",
    7: "smpte240m",
    8: "ycgco",
    9: "bt2020nc",
    10: "bt2020c",
    12: "chroma-derived-nc",
    13: "chroma-derived-c",
    14: "ictcp",
}
TRANSFERS = {
    1: "bt709",
    4: "gamma22",
    5: "gamma28",
    6: "smpte170m",
    7: "smpte240m",
    8: "linear",
    9: "log100",
    10: "log316",
    11: "iec61966-2-4",
    13: "iec61966-2-1",
    14: "bt2020-10",
    15: "bt2020-12",
    16: "smpte2084",
    18: "arib-std-b67",
}
PRIMARIES = {
    1: "bt709",
    4: "bt470m",
    5: "bt470bg",
    6: "smpte170m",
    7: "smpte240m",
    8: "film",
    9: "bt2020",
    10: "smpte428",
    11: "smpte431",
    12: "smpte432",
    22: "jedec-p22",
}
# Primaries and transfer that go with a matrix, for sources that tag only the matrix.
MATRIX_DEFAULTS = {1: (1, 1), 9: (9, 14), 10: (9, 14), 7: (7, 7)}


# -- colour and the clip graph (shared with examples/upscale_yuv.vpy) ---------------------------


@dataclass(frozen=True)
class Colour:
    """The colour description of a YUV clip: H.273 codes and the range."""

    matrix: int
    transfer: int
    primaries: int
    range: int

    @classmethod
    def of(cls, clip: vs.VideoNode) -> Colour:
        """From frame 0's properties. An unspecified matrix falls back to BT.709 for HD (width
        >= 1280 or height >= 720) and BT.601 (SMPTE 170M) for SD; unspecified primaries and
        transfer to those that go with the matrix; an unspecified range to limited."""
        props = clip.get_frame(0).props
        matrix = props.get("_Matrix", 2)
        if matrix not in MATRICES or matrix == 0:
            matrix = 1 if clip.width >= 1280 or clip.height >= 720 else 6
        primaries, transfer = MATRIX_DEFAULTS.get(matrix, (6, 6))
        if props.get("_Primaries") in PRIMARIES:
            primaries = props["_Primaries"]
        if props.get("_Transfer") in TRANSFERS:
            transfer = props["_Transfer"]
        return cls(matrix, transfer, primaries, int(props.get("_Range", vs.RANGE_LIMITED)))

    def ffmpeg_options(self) -> list[str]:
        return [
            "-colorspace",
            MATRICES[self.matrix],
            "-color_primaries",
            PRIMARIES[self.primaries],
            "-color_trc",
            TRANSFERS[self.transfer],
            "-color_range",
            "pc" if self.range == vs.RANGE_FULL else "tv",
        ]


# The output format of RGB sources (image folders, RGB videos) when they are encoded as video.
RGB_SOURCE_OUTPUT = (vs.YUV420P8, Colour(matrix=1, transfer=1, primaries=1, range=vs.RANGE_LIMITED))


def detect_scenes(clip: vs.VideoNode) -> vs.VideoNode:
    """`clip` with `_SceneChangePrev`/`_SceneChangeNext` from scxvid (vapoursynth-scxvid)."""
    core = vs.core
    if not hasattr(core, "scxvid"):
        raise UpscaleError(
            "scene detection needs the scxvid plugin; pip install vapoursynth-scxvid, "
            "or turn scene detection off (--no-scene-detect, scene_detect=False)"
        )
    analysed = clip
    if clip.format.id != vs.YUV420P8:  # scxvid reads 8-bit 4:2:0 only
        options = {"matrix_s": "709"} if clip.format.color_family == vs.RGB else {}
        analysed = core.resize.Bilinear(clip, format=vs.YUV420P8, **options)
    return core.std.CopyFrameProps(clip, core.scxvid.Scxvid(analysed), props=SCENE_PROPS)


def mark_cuts(clip: vs.VideoNode, cuts: Sequence[int]) -> vs.VideoNode:
    """`clip` with `_SceneChangePrev` 1 on the frames of `cuts` (`scene_cuts`) and 0 on the others:
    what scxvid gives the filter, from cuts found before, without decoding the clip up to here."""
    core = vs.core
    unmarked = core.std.SetFrameProps(clip, _SceneChangePrev=0)
    pieces, start = [], 0
    for cut in cuts:
        if cut > start:
            pieces.append(unmarked[start:cut])
        pieces.append(core.std.SetFrameProps(clip[cut], _SceneChangePrev=1))
        start = cut + 1
    if start < clip.num_frames:
        pieces.append(unmarked[start:])
    return core.std.Splice(pieces)


def output_format(source: vs.VideoNode, rgb_out: bool = False) -> tuple[int, Colour | None]:
    """The format the upscaled clip is encoded in and its colour description (see `upscaled_clip`);
    UpscaleError for a source the job cannot take."""
    if source.format is None or source.width == 0:
        raise UpscaleError("the input changes format or size between frames; convert it to one format first")
    if source.format.color_family not in (vs.YUV, vs.RGB):
        raise UpscaleError(f"unsupported input format {source.format.name}; use a YUV or RGB video")
    if rgb_out:
        return vs.RGB24, None
    if source.format.color_family == vs.YUV:
        return source.format.id, Colour.of(source)
    return RGB_SOURCE_OUTPUT


def upscaled_clip(
    source: vs.VideoNode,
    rgb_out: bool = False,
    scene_detect: bool = True,
    cuts: Sequence[int] | None = None,
    **upscale_options,
) -> tuple[vs.VideoNode, Colour | None]:
    """The upscaled clip of `source` and its colour description, as the command encodes it.

    YUV sources are converted to RGBS with their own matrix and range (`Colour.of`), upscaled
    with `vsrealbasicvsr.upscale(**upscale_options)`, and converted back to the source's format
    with the same matrix and range. RGB sources come back as YUV420P8 BT.709 (limited). With
    `rgb_out`, the result is RGB24 (for PNG frames) and the colour None. With `scene_detect`,
    windows split at scxvid's cuts, or at `cuts` when given (found before by `scene_cuts`).
    """
    from .. import upscale

    core = vs.core
    out_format, colour = output_format(source, rgb_out)
    if scene_detect:
        source = detect_scenes(source) if cuts is None else mark_cuts(source, cuts)
    if source.format.color_family == vs.YUV:
        yuv_colour = colour or Colour.of(source)
        rgb = core.resize.Bicubic(source, format=vs.RGBS, matrix_in=yuv_colour.matrix, range_in=yuv_colour.range)
    else:
        rgb = core.resize.Bicubic(source, format=vs.RGBS)
    upscaled = upscale(rgb, **upscale_options)
    limit_frame_cache(source, rgb, upscaled, upscale_options)
    if rgb_out:
        return core.resize.Bicubic(upscaled, format=vs.RGB24), None
    encoded = core.resize.Bicubic(upscaled, format=out_format, matrix=colour.matrix, range=colour.range)
    encoded = core.std.SetFrameProps(
        encoded, _Matrix=colour.matrix, _Transfer=colour.transfer, _Primaries=colour.primaries, _Range=colour.range
    )
    return encoded, colour


# Frames the filter hands VapourSynth's cache ahead of requests: setLinearFilter's fixed cache of
# 2 x threads + this many.
LINEAR_CACHE_FRAMES = 20


def limit_frame_cache(source: vs.VideoNode, rgb: vs.VideoNode, upscaled: vs.VideoNode, upscale_options: dict) -> None:
    """Sets VapourSynth's cache (`core.max_cache_size`) to what the job's graph needs.

    Its default is half the machine's memory, and its caches may grow towards it while they learn
    the filter's pattern (the context frames read again behind each window). The graph needs the
    frames the filter holds at the output size (its two windows and its cache ahead of requests)
    and two windows with their context of input frames, in the source's format and in RGBS; more
    buys nothing. Never above the default's half of the machine's memory."""
    core = vs.core
    window, read = window_frames(upscale_options)
    held = (2 * window + 2 * core.num_threads + LINEAR_CACHE_FRAMES) * frame_bytes(upscaled)
    held += 2 * read * (frame_bytes(source) + frame_bytes(rgb))
    half_memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    core.max_cache_size = math.ceil(min(held, half_memory) / 2**20)


def raw_pixel_format(clip: vs.VideoNode) -> tuple[str, list[int]]:
    """ffmpeg's rawvideo pixel format for `clip` and the order its planes are written in."""
    fmt = clip.format
    if fmt.color_family == vs.RGB and fmt.id == vs.RGB24:
        return "gbrp", [1, 2, 0]
    subsampling = {(1, 1): "420", (1, 0): "422", (0, 0): "444"}.get((fmt.subsampling_w, fmt.subsampling_h))
    if fmt.color_family != vs.YUV or fmt.sample_type != vs.INTEGER or subsampling is None:
        raise UpscaleError(f"cannot encode the format {fmt.name}; use an 8- to 16-bit YUV 4:2:0, 4:2:2 or 4:4:4 input")
    bits = "" if fmt.bits_per_sample == 8 else f"{fmt.bits_per_sample}le"
    return f"yuv{subsampling}p{bits}", [0, 1, 2]


def sample_aspect_ratio(source: vs.VideoNode) -> Fraction | None:
    """The source's sample aspect ratio (frame 0's `_SARNum`/`_SARDen`); None for square or unknown."""
    props = source.get_frame(0).props
    numerator, denominator = props.get("_SARNum", 0), props.get("_SARDen", 0)
    return Fraction(numerator, denominator) if numerator > 0 and denominator > 0 and numerator != denominator else None


def filter_message(error: Exception) -> str:
    """The first line of a filter or engine error, without its `Upscale: ` prefix."""
    return (str(error).splitlines() or [type(error).__name__])[0].removeprefix("Upscale: ")


def scene_cuts(source: vs.VideoNode) -> list[int]:
    """The frames after frame 0 that start a new scene (scxvid's `_SceneChangePrev`, as the
    filter reads it): decodes the whole clip."""
    analysed = detect_scenes(source)
    return [
        n for n, frame in enumerate(analysed.frames(close=True)) if n > 0 and frame.props.get("_SceneChangePrev") == 1
    ]
