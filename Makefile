# netfleet.xdp_lb: the two commands users need are `make demo` and `make test`.
VENV   ?= $(CURDIR)/.venv
PY     := $(VENV)/bin/python
PYTEST := $(PY) -m pytest -p no:cacheprovider
export PATH := $(VENV)/bin:$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: deps demo test test-unit test-dataplane test-integration test-molecule \
        sanity lint bench-dataplane clean

## deps: install packages (apt) and the pinned venv, link the collection
deps:
	bash scripts/install-deps.sh
	bash scripts/link-collection.sh

## demo: build the netns lab, deploy site.yml to it, send traffic, tear down
demo: deps
	bash scripts/demo.sh

## test: the whole suite (what CI runs)
test: deps test-unit test-dataplane test-integration test-molecule sanity lint

test-unit: deps
	$(PYTEST) -q tests/unit

test-dataplane: deps
	$(PYTEST) -q tests/dataplane

test-integration: deps
	bash scripts/run-integration.sh

test-molecule: deps
	bash scripts/run-molecule.sh

sanity: deps
	bash scripts/sanity.sh

lint: deps
	cd $(CURDIR) && ansible-lint --profile production

bench-dataplane: deps
	$(PY) benchmarks/dataplane/run.py

clean:
	rm -rf build .pytest_cache tests/output
