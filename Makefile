# Two commands get a newcomer from clone to result:
#   make demo   set up .venv (once; again only when requirements change) and run the main demo
#   make test   set up .venv the same way and run the whole test suite
#   make results  regenerate every table and plot the README quotes into docs/results/ (reuses runs/)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export MUJOCO_GL ?= egl

.PHONY: demo test bench results lint clean-venv

$(STAMP): requirements.txt requirements-build.txt setup.py package.xml scripts/bootstrap.sh scripts/build_interfaces.sh $(wildcard interfaces/*/* interfaces/*/*/*)
	scripts/bootstrap.sh $(PYTHON) $(VENV)
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/mtrl-robot demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/mtrl-robot bench sim
	$(BIN)/mtrl-robot bench meta
	$(BIN)/mtrl-robot bench ros
	$(BIN)/mtrl-robot bench scale

results: $(STAMP)
	$(BIN)/mtrl-robot results

lint: $(STAMP)
	$(BIN)/ruff check mtrl_robot tests

clean-venv:
	rm -rf $(VENV)
