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
    0: "rgb",
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
# The encoders that write HDR10 static metadata into their stream: the option, and its keys for
# the mastering display and the content light level (the values have the same syntax in both).
HDR_ENCODER_OPTIONS = {
    "libx264": ("-x264-params", "mastering-display", "cll"),
    "libx265": ("-x265-params", "master-display", "max-cll"),
}


# -- colour and the clip graph (shared with examples/upscale_yuv.vpy) ---------------------------


@dataclass(frozen=True)
class Colour:
    """The colour description of an encoded clip: H.273 codes, the range, and HDR metadata.

    Codes outside the tables (2, unspecified) are left out of what ffmpeg is told."""

    matrix: int
    transfer: int
    primaries: int
    range: int
    hdr: HdrMetadata | None = None

    @classmethod
    def of(cls, clip: vs.VideoNode) -> Colour:
        """A YUV clip's, from frame 0's properties. An unspecified matrix falls back to BT.709 for
        HD (width >= 1280 or height >= 720) and BT.601 (SMPTE 170M) for SD; unspecified primaries
        and transfer to those that go with the matrix; an unspecified range to limited."""
        props = clip.get_frame(0).props
        matrix = props.get("_Matrix", 2)
        if matrix not in MATRICES or matrix == 0:
            matrix = 1 if clip.width >= 1280 or clip.height >= 720 else 6
        primaries, transfer = MATRIX_DEFAULTS.get(matrix, (6, 6))
        if props.get("_Primaries") in PRIMARIES:
            primaries = props["_Primaries"]
        if props.get("_Transfer") in TRANSFERS:
            transfer = props["_Transfer"]
        return cls(matrix, transfer, primaries, int(props.get("_Range", vs.RANGE_LIMITED)), HdrMetadata.of(props))

    @classmethod
    def of_rgb(cls, clip: vs.VideoNode) -> Colour:
        """An RGB clip's (full range), from frame 0's properties; primaries and transfer stay
        unspecified when they are not there."""
        props = clip.get_frame(0).props
        return cls(0, props.get("_Transfer", 2), props.get("_Primaries", 2), vs.RANGE_FULL, HdrMetadata.of(props))

    def as_rgb(self) -> Colour:
        """The description of the same colours as full-range RGB (PNG frames)."""
        return Colour(0, self.transfer, self.primaries, vs.RANGE_FULL, self.hdr)

    def ffmpeg_options(self) -> list[str]:
        """As ffmpeg options: before `-i` of a raw input they tag its frames, and so the encoded
        stream (an encoder takes them from the frames); after a stream copy, the container."""
        options = ["-colorspace", MATRICES[self.matrix]] if self.matrix in MATRICES else []
        if self.primaries in PRIMARIES:
            options += ["-color_primaries", PRIMARIES[self.primaries]]
        if self.transfer in TRANSFERS:
            options += ["-color_trc", TRANSFERS[self.transfer]]
        return [*options, "-color_range", "pc" if self.range == vs.RANGE_FULL else "tv"]

    def hdr_options(self, codec: str) -> list[str]:
        """The encoder options that write the HDR metadata into `codec`'s stream, if it can."""
        return (self.hdr and self.hdr.encoder_options(codec)) or []

    def hdr_dropped(self, codec: str | None) -> str | None:
        """Why the HDR metadata does not reach an output in `codec` (None: PNG frames), or None
        when it does or there is none."""
        if self.hdr is None or self.hdr_options(codec or ""):
            return None
        target = "PNG frames" if codec is None else codec
        return (
            f"the input's HDR mastering display and light level metadata cannot be written with {target}; "
            f"they are not in the output (--codec {' or '.join(HDR_ENCODER_OPTIONS)} keeps them)"
        )


@dataclass(frozen=True)
class HdrMetadata:
    """HDR10 static metadata of a source (bestsource's frame properties), in the units and syntax
    of x264's and x265's options: the mastering display (chromaticities in 0.00002, luminance in
    0.0001 cd/m2) and the content light level (MaxCLL, MaxFALL in cd/m2); either may be None."""

    mastering_display: str | None
    content_light: str | None

    @classmethod
    def of(cls, props) -> HdrMetadata | None:
        display = None
        try:
            xs, ys = list(props["MasteringDisplayPrimariesX"]), list(props["MasteringDisplayPrimariesY"])
            (rx, gx, bx), (ry, gy, by) = xs, ys  # red, green, blue
            wx, wy = props["MasteringDisplayWhitePointX"], props["MasteringDisplayWhitePointY"]
            high, low = props["MasteringDisplayMaxLuminance"], props["MasteringDisplayMinLuminance"]
        except (KeyError, ValueError):
            pass
        else:

            def xy(x: float, y: float) -> str:
                return f"({round(x / 0.00002)},{round(y / 0.00002)})"

            luminance = f"L({round(high * 10000)},{round(low * 10000)})"
            display = f"G{xy(gx, gy)}B{xy(bx, by)}R{xy(rx, ry)}WP{xy(wx, wy)}{luminance}"
        light = None
        if "ContentLightLevelMax" in props:
            light = f"{int(props['ContentLightLevelMax'])},{int(props.get('ContentLightLevelAverage', 0))}"
        return cls(display, light) if display or light else None

    def encoder_options(self, codec: str) -> list[str] | None:
        """The options that make `codec` write the metadata into its stream; None when it cannot."""
        if codec not in HDR_ENCODER_OPTIONS:
            return None
        option, display_key, light_key = HDR_ENCODER_OPTIONS[codec]
        params = [f"{display_key}={self.mastering_display}"] if self.mastering_display else []
        params += [f"{light_key}={self.content_light}"] if self.content_light else []
        return [option, ":".join(params)]


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
    if clip.format.id != vs.YUV420P8 or clip.width % 2 or clip.height % 2:
        # scxvid reads 8-bit 4:2:0 only, which has even sizes: an odd one is analysed a pixel larger
        options = {"matrix_s": "709"} if clip.format.color_family == vs.RGB else {}
        size = {"width": clip.width + clip.width % 2, "height": clip.height + clip.height % 2}
        analysed = core.resize.Bilinear(clip, format=vs.YUV420P8, **size, **options)
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


def output_format(source: vs.VideoNode, rgb_out: bool = False) -> tuple[int, Colour]:
    """The format the upscaled clip is encoded in and its colour description (see `upscaled_clip`);
    UpscaleError for a source the job cannot take."""
    if source.format is None or source.width == 0:
        raise UpscaleError("the input changes format or size between frames; convert it to one format first")
    if source.format.color_family not in (vs.YUV, vs.RGB):
        raise UpscaleError(f"unsupported input format {source.format.name}; use a YUV or RGB video")
    yuv = source.format.color_family == vs.YUV
    if rgb_out:
        deep = source.format.sample_type == vs.FLOAT or source.format.bits_per_sample > 8
        return (vs.RGB48 if deep else vs.RGB24), (Colour.of(source).as_rgb() if yuv else Colour.of_rgb(source))
    if yuv:
        return source.format.id, Colour.of(source)
    return RGB_SOURCE_OUTPUT


def upscaled_clip(
    source: vs.VideoNode,
    rgb_out: bool = False,
    scene_detect: bool = True,
    cuts: Sequence[int] | None = None,
    **upscale_options,
) -> tuple[vs.VideoNode, Colour]:
    """The upscaled clip of `source` and its colour description, as the command encodes it.

    YUV sources are converted to RGBS with their own matrix and range (`Colour.of`), upscaled
    with `vsrealbasicvsr.upscale(**upscale_options)`, and converted back to the source's format
    (its bit depth too) with the same matrix and range. RGB sources come back as YUV420P8 BT.709
    (limited). With `rgb_out` (PNG frames), the result is RGB24, or RGB48 for sources of more than
    8 bits, with the source's primaries and transfer. With `scene_detect`, windows split at
    scxvid's cuts, or at `cuts` when given (found before by `scene_cuts`).
    """
    from .. import upscale

    core = vs.core
    out_format, colour = output_format(source, rgb_out)
    if scene_detect:
        source = detect_scenes(source) if cuts is None else mark_cuts(source, cuts)
    if source.format.color_family == vs.YUV:
        yuv_colour = Colour.of(source)
        rgb = core.resize.Bicubic(source, format=vs.RGBS, matrix_in=yuv_colour.matrix, range_in=yuv_colour.range)
    else:
        rgb = core.resize.Bicubic(source, format=vs.RGBS)
    upscaled = upscale(rgb, **upscale_options)
    limit_frame_cache(source, rgb, upscaled, upscale_options)
    if rgb_out:
        return core.resize.Bicubic(upscaled, format=out_format), colour
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
    if fmt.id in (vs.RGB24, vs.RGB48):
        return ("gbrp" if fmt.id == vs.RGB24 else "gbrp16le"), [1, 2, 0]
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
