# FuseBench: the two commands of the README.
#   make demo   create .venv if missing, install, run the whole pipeline on generated demo data
#   make test   create .venv if missing, install, run the test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(abspath $(VENV))/bin
STAMP  := $(VENV)/.installed-stamp
export PATH := $(BIN):$(PATH)

.PHONY: install demo test repro bench clean-results help

help:
	@echo "make demo   - install and run the whole pipeline on the built-in demo data"
	@echo "make test   - install and run the test suite"
	@echo "make bench  - print the speed/memory benchmarks"

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q -e ".[test]"
	@touch $(STAMP)

install: $(STAMP)

demo: install
	@start=$$(date +%s); \
	$(BIN)/python -m flows.server -- $(BIN)/dvc repro && \
	echo "" && echo "FuseBench demo finished in $$(( $$(date +%s) - start )) s." && \
	echo "  report:        results/report/report.html (and report.md, summary.json, *.csv)" && \
	echo "  fused images:  data/fused/<dataset>/<method>/" && \
	echo "  metrics:       results/metrics/  detection: results/detection/  segmentation: results/segmentation/" && \
	echo "  compare runs:  $(BIN)/dvc metrics show ; $(BIN)/dvc exp show"

repro: install
	$(BIN)/python -m flows.server -- $(BIN)/dvc repro

test: install
	$(BIN)/python -m pytest -q -p no:cacheprovider

bench: install
	$(BIN)/python -m pipeline bench fuse --method mlfuse --size 480x640 --repeat 5
	$(BIN)/python -m pipeline bench metrics --convention cddfuse --size 480x640
	$(BIN)/python -m pipeline bench metrics --convention matlab --size 480x640

clean-results:
	rm -rf results data/fused data/vsm models
