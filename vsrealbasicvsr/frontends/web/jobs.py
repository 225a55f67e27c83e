"""What the page may ask of a job, and the job API's spec of a stored job.

The page offers a few of Upscale's options (`PAGE_OPTIONS`, their names, defaults and meaning
from `vsrealbasicvsr.options`) and two encoders: x264 into MP4, which a browser plays, and
lossless FFV1 into Matroska. Files are server-made names inside the job's folder; nothing the
user sends becomes a path.
"""

from __future__ import annotations

from pathlib import Path

from ... import options
from ...job import CRF_CODECS, DEFAULT_CODEC, DEFAULT_CRF, JobSpec, new_spec
from ...weights import registry

PAGE_OPTIONS = ("model", "max_seq_len", "device", "precision", "tile", "backend")
# Encoders the page offers, with their output container.
CODECS = {DEFAULT_CODEC: ".mp4", "ffv1": ".mkv"}
CRF_RANGE = (0, 51)
# The tile option as the page's controls offer it (options.py says it in Upscale's terms, with
# numbers for automatic and never).
TILE_HELP = (
    "tile: auto cuts frames into tiles only when a window, its context frames included, does not "
    "fit in memory; off never does; size: tiles of W x H input pixels (at least 64)."
)


class RequestError(ValueError):
    """A request the page (or a client) can correct; the message says how."""


def option_choices() -> dict:
    """The options the page shows: for each, its default, meaning and choices (GET /api/options)."""
    by_name = {option.name: option for option in options.fields()}
    shown = {}
    for name in PAGE_OPTIONS:
        option = by_name[name]
        shown[name] = {
            "default": option.default,
            "help": option.metadata["help"],
            "default_text": options.describe_default(option),
        }
    shown["model"]["choices"] = {
        name: {
            "description": f"x{info.scale}, {info.purpose}: {info.description}",
            "scale": info.scale,
            "installed": registry.resolve(name) is not None,
        }
        for name, info in registry.MODELS.items()
    }
    shown["model"]["default"] = default_model()
    shown["tile"]["help"] = TILE_HELP
    shown["precision"]["choices"] = list(options.PRECISIONS)
    shown["backend"]["choices"] = list(options.BACKENDS)
    shown["tile"]["special"] = {"auto": options.TILE_AUTO, "off": options.TILE_OFF}
    shown["codec"] = {
        "default": DEFAULT_CODEC,
        "choices": list(CODECS),
        "help": "x264 into MP4 (plays in the page), or lossless FFV1 into Matroska.",
    }
    shown["crf"] = {
        "default": DEFAULT_CRF,
        "applies_to": [codec for codec in CODECS if codec in CRF_CODECS],
        "range": list(CRF_RANGE),
        "help": "Quality of x264: lower is better and larger.",
    }
    return shown


def default_model() -> str:
    """The model the page starts with: the registry's default when its weights are installed, else
    the first installed one (a job of a model that is not installed waits for a download, which
    may not come), else the registry's default."""
    installed = [name for name in registry.MODELS if registry.resolve(name) is not None]
    return registry.DEFAULT_MODEL if registry.DEFAULT_MODEL in installed or not installed else installed[0]


def parse_request(body: object) -> dict:
    """The request {"options": {...}, "codec": ..., "crf": ...} from the page's JSON, checked;
    RequestError says what is wrong."""
    if not isinstance(body, dict):
        raise RequestError('send the options as a JSON object, e.g. {"max_seq_len": 30}')
    unknown = sorted(set(body) - {*PAGE_OPTIONS, "codec", "crf"})
    if unknown:
        raise RequestError(f"unknown option {', '.join(unknown)}; use {', '.join([*PAGE_OPTIONS, 'codec', 'crf'])}")
    chosen = {name: body[name] for name in PAGE_OPTIONS if body.get(name) not in (None, "")}
    try:
        options.UpscaleOptions.of(**chosen)
    except ValueError as error:
        raise RequestError(str(error).removeprefix("Upscale: ")) from None
    codec = body.get("codec") or DEFAULT_CODEC
    if codec not in CODECS:
        raise RequestError(f"unknown codec {codec!r}; use one of {', '.join(CODECS)}")
    crf = body.get("crf")
    if crf in (None, ""):
        crf = None
    elif codec not in CRF_CODECS:
        raise RequestError(f"crf applies to {DEFAULT_CODEC}, not {codec}; leave it empty")
    elif not isinstance(crf, int) or isinstance(crf, bool) or not CRF_RANGE[0] <= crf <= CRF_RANGE[1]:
        raise RequestError(f"crf must be a whole number from {CRF_RANGE[0]} to {CRF_RANGE[1]}, not {crf!r}")
    return {"options": chosen, "codec": codec, "crf": crf}


def job_folder(jobs: Path, job_id: str) -> Path:
    return jobs / job_id


def output_path(jobs: Path, job: dict) -> Path:
    return job_folder(jobs, job["id"]) / ("output" + CODECS[job["request"]["codec"]])


def spec_of(jobs: Path, job: dict, request: dict | None = None) -> JobSpec:
    """The job API's spec of a stored job (with `request` instead of its own when given). Always
    `resume`: the work folder is the job's own, so what it holds is this job's finished segments
    (a job whose options changed has its work folder removed first)."""
    request = request or job["request"]
    return new_spec(
        Path(job["input"]),
        output_path(jobs, {**job, "request": request}),
        request["options"],
        codec=request["codec"],
        crf=request["crf"],
        quiet=True,
        resume=True,
    )


def download_name(job: dict) -> str:
    """The output's name for the user's download: the input's stem with the model's scale (_x4)."""
    stem = Path(job["name"]).stem or "video"
    return f"{stem}_x{model_scale(job)}{CODECS[job['request']['codec']]}"


def model_scale(job: dict) -> int:
    """The scale of the job's model (the page offers registered models only)."""
    return registry.get(job["request"]["options"].get("model", registry.DEFAULT_MODEL)).scale
