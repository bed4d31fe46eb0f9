# bionn: `make demo` and `make test` are all a new user needs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --disable-pip-version-check -q -c constraints.txt

.PHONY: demo test bench lint clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml constraints.txt | $(VENV)/bin/python
	$(PIP) torch==2.13.0
	$(PIP) -e .
	touch $@

# BioTorch 0.0.16, flyvis 1.2.0 and Norse 1.1.0 declare torchvision (unavailable here; bionn
# uses none of their torchvision parts: flyvis is never imported, only its connectome template
# read; Norse's spiking modules do not import it),
# and cect 0.3.5 declares plotting/NeuroML packages its shipped data do not need: all three
# are installed without their dependencies.
NODEPS := biotorch==0.0.16 cect==0.3.5 flyvis==1.2.0 norse==1.1.0

$(VENV)/.installed-test: $(VENV)/.installed pyproject.toml
	$(PIP) -e '.[test]'
	$(PIP) --no-deps $(NODEPS)
	touch $@

# SpikingJelly 2.0.0 (a peer of benchmarks/snn_train.py) declares torchvision and torchaudio;
# its torch-backend neurons need neither.
$(VENV)/.installed-bench: $(VENV)/.installed pyproject.toml
	$(PIP) -e '.[bench]'
	$(PIP) --no-deps $(NODEPS) spikingjelly==2.0.0
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/bionn run

test: $(VENV)/.installed-test
	$(VENV)/bin/ruff check src tests benchmarks examples
	$(VENV)/bin/lint-imports --no-cache
	$(VENV)/bin/mkdocs build --strict --quiet --site-dir build/site
	$(PY) -m pytest -q

bench: $(VENV)/.installed-bench
	@for b in benchmarks/[!_]*.py; do echo "== $$b"; OMP_NUM_THREADS=1 $(PY) $$b || exit 1; done

lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check src tests benchmarks examples
	$(VENV)/bin/lint-imports --no-cache

clean:
	rm -rf $(VENV) runs build *.egg-info src/*.egg-info
