# The two commands of the README: `make demo` (set up + segment the bundled sample) and `make test`.
PYTHON ?= python3
# UTF-8 I/O whatever the locale of the machine (CI may run without one)
export PYTHONUTF8 := 1
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e ".[train,test]"
	touch $(STAMP)

.PHONY: setup test demo lint
setup: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .

test: $(STAMP) lint
	$(BIN)/python -m pytest -q

demo: $(STAMP)
	$(BIN)/pbseg segment PediatricBoneSeg/PediatricBoneSegLib/resources/knee_phantom.nii.gz -o demo_output --overwrite
