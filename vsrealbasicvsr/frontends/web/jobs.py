"""What the page may ask of a job, and the job API's spec of a stored job.

The page's form is made from `vsrealbasicvsr.options` (`form`): every option of `Upscale` but
a path on the server, with its name, kind, choices, smallest value, default and meaning, and
two encoders: x264 into MP4, which a browser plays, and lossless FFV1 into Matroska (crf's range
per encoder from the job package). Files are server-made names inside the job's folder; nothing
the user sends becomes a path.
"""

from __future__ import annotations

from pathlib import Path

from ... import options
from ...job import CRF_CODECS, DEFAULT_CODEC, DEFAULT_CRF, JobSpec, new_spec
from ...weights import registry

# The options shown first, in this order; the others come under "More options".
MAIN_OPTIONS = ("model", "max_seq_len", "device", "precision", "backend", "tile")
# Encoders the page offers, with their output container.
CODECS = {DEFAULT_CODEC: ".mp4", "ffv1": ".mkv"}
# How each kind of option is asked for (options.py's kinds); a path on the server is not asked.
FIELD_KINDS = {"text": "text", "int": "number", "flag": "flag", "tile": "tile"}


class RequestError(ValueError):
    """A request the page (or a client) can correct; the message says how."""


def page_options() -> list[str]:
    """The names of the options the page asks for: the main ones first, then options.py's order."""
    asked = [option.name for option in options.fields() if option.metadata["kind"] in FIELD_KINDS]
    return [*MAIN_OPTIONS, *(name for name in asked if name not in MAIN_OPTIONS)]


def form() -> dict:
    """The page's form (GET /api/config): {"options": Upscale's, "output": codec and crf}, each
    {name: field} in the order shown, a field what the page needs to ask for it: {"kind": text |
    select | number | flag | tile, "default", "default_text", "help", "main" (shown first), and
    "choices" (select: {value: {"label", ...}}), "suggestions" (text), "min" (number; tile: a
    size's smallest side), "max" (crf: per codec), "special" (tile: the values of auto and off)}."""
    by_name = {option.name: option for option in options.fields()}
    shown = {}
    for name in page_options():
        option, about = by_name[name], by_name[name].metadata
        field = {
            "kind": "select" if about["choices"] else FIELD_KINDS[about["kind"]],
            "default": option.default,
            "default_text": options.describe_default(option),
            "help": about["help"],
            "main": name in MAIN_OPTIONS,
        }
        if about["choices"]:
            field["choices"] = {choice: {"label": choice} for choice in about["choices"]}
        if about["suggestions"]:
            field["suggestions"] = list(about["suggestions"])
        if about["minimum"] is not None:
            field["min"] = about["minimum"]
        shown[name] = field
    model = default_model()
    shown["model"].update(kind="select", default=model, default_text=f'"{model}"', choices=model_choices())
    shown["tile"].update(
        special={"auto": options.TILE_AUTO, "off": options.TILE_OFF},
        help=(
            "tile: auto cuts frames into tiles only when a window, its context frames included, does "
            "not fit in memory; off never does; size: tiles of W x H input pixels (at least "
            f"{shown['tile']['min']})."
        ),
    )
    output = {
        "codec": {
            "kind": "select",
            "default": DEFAULT_CODEC,
            "choices": {codec: {"label": codec} for codec in CODECS},
            "help": "x264 into MP4 (plays in the page), or lossless FFV1 into Matroska.",
            "main": True,
        },
        "crf": {
            "kind": "number",
            "default": None,
            "default_text": f"{DEFAULT_CRF}",
            "min": 0,
            # The highest crf of each codec that takes one: the field's range follows the codec.
            "max": {codec: CRF_CODECS[codec] for codec in CODECS if codec in CRF_CODECS},
            "help": "Quality of x264: lower is better and larger.",
            "main": True,
        },
    }
    return {"options": shown, "output": output}


def model_choices() -> dict:
    """The registry's models as the page offers them: a description, the scale, installed or not."""
    choices = {}
    for name, info in registry.MODELS.items():
        installed = registry.resolve(name) is not None
        choices[name] = {
            "label": name if installed else f"{name} (not installed)",
            "description": f"x{info.scale}, {info.purpose}: {info.description}",
            "scale": info.scale,
            "installed": installed,
        }
    return choices


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
    asked = page_options()
    unknown = sorted(set(body) - {*asked, "codec", "crf"})
    if unknown:
        raise RequestError(f"unknown option {', '.join(unknown)}; use {', '.join([*asked, 'codec', 'crf'])}")
    chosen = {name: body[name] for name in asked if body.get(name) not in (None, "")}
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
        takes = ", ".join(name for name in CODECS if name in CRF_CODECS)
        raise RequestError(f"crf applies to {takes}, not {codec}; leave it empty")
    elif not isinstance(crf, int) or isinstance(crf, bool) or not 0 <= crf <= CRF_CODECS[codec]:
        raise RequestError(f"crf of {codec} must be a whole number from 0 to {CRF_CODECS[codec]}, not {crf!r}")
    # Defaults written out are left out: the page sends every option, and a request that differs
    # only in those is the same job (its kept segments continue). The model stays: the page's
    # first choice may not be the registry's default, and the form shows the job's.
    recorded = options.without_defaults(chosen) | ({"model": chosen["model"]} if "model" in chosen else {})
    return {"options": recorded, "codec": codec, "crf": crf}


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
