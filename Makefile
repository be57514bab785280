# shiftboss: make run · make test · make proto · make bench · make chaos
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test proto bench chaos install clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# Reinstall when the build inputs change (dependencies, their pinned versions, the Cython core).
$(STAMP): $(PY) pyproject.toml setup.py constraints.txt core/_admission.pyx
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: install
	$(VENV)/bin/shiftboss server start

# The suite mostly waits (servers, workers and flows in processes of their own), so three
# test processes share the two cores; a module's tests stay in one (its fixtures with it).
TEST_WORKERS ?= 3

test: install
	$(PY) -m pytest -q -rs -p no:cacheprovider --db both -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

# The mutation check: the differential test must catch each deliberate bug that
# core/sb_mutants.hpp can build into the core (builds cached in build/mutants/).
.PHONY: mutants
mutants: install
	$(PY) -m tests.mutants

# The core's headers and included files are build inputs too.
$(STAMP): $(wildcard core/*.pxi core/*.hpp)

proto: install
	$(PY) -m grpc_tools.protoc -Iproto \
		--python_out=. --pyi_out=. --grpc_python_out=. \
		--descriptor_set_out=shiftboss/v1/descriptors.binpb --include_source_info \
		proto/shiftboss/v1/*.proto

bench: install
	$(PY) -m pytest bench -q -p no:cacheprovider --benchmark-columns=min,median,mean,ops $(PYTEST_ARGS)

# Every fault scenario, on SQLite and a private PostgreSQL, with more runs (tests/chaos).
chaos: install
	SHIFTBOSS_CHAOS=full $(PY) -m pytest tests/chaos -q -p no:cacheprovider -s $(PYTEST_ARGS)

clean:
	rm -rf build $(VENV) *.egg-info core/*.c core/*.so
