# Both entry points set the machine up first (idempotent); run them as root: sudo make demo
VENV := .venv
export VENV

.PHONY: setup demo test clean

setup:
	@MAKE_TARGET=$(firstword $(MAKECMDGOALS) setup) bash scripts/setup.sh

demo: setup
	@bash demo/run.sh

test: setup
	$(VENV)/bin/python -m pytest -q -ra

clean:
	rm -rf $(VENV) demo-output .pytest_cache
