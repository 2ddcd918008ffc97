# netfleet.xdp_lb: the two commands users need are `make demo` and `make test`.
VENV   ?= $(CURDIR)/.venv
PY     := $(VENV)/bin/python
PYTEST := $(PY) -m pytest -p no:cacheprovider
export PATH := $(VENV)/bin:$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: deps demo test test-unit test-dataplane test-security test-examples test-integration test-molecule test-ops test-packaging \
        test-badinput sanity lint bench-dataplane bench-forwarding bench-fleet bench-controlplane bench-plots clean

## deps: install packages (apt) and the pinned venv, link the collection
deps:
	bash scripts/install-deps.sh
	bash scripts/link-collection.sh

## demo: build the netns lab, deploy site.yml to it, send traffic, tear down
demo: deps
	bash scripts/demo.sh

## test: the whole suite (what CI runs)
test: deps test-unit test-packaging test-dataplane test-security test-badinput test-examples test-integration test-molecule test-ops sanity lint

test-unit: deps
	$(PYTEST) -q tests/unit

## test-packaging: README's "Use it on your hosts": build, install the tarball outside the checkout, ansible-doc, syntax checks
test-packaging: deps
	$(PYTEST) -q tests/packaging

test-dataplane: deps
	$(PYTEST) -q tests/dataplane

## test-security: the trust model (docs/design.md): nobody's planted objects, links and directories refused
test-security: deps
	$(PYTEST) -q tests/security

## test-badinput: bad input to the module, xdp_lb_info and xdp-lb against a running instance; the host must not change
test-badinput: deps
	$(PYTEST) -q tests/badinput

## test-examples: every task of the modules' EXAMPLES, run for real in namespaces of its own
test-examples: deps
	$(PYTEST) -q tests/examples

test-integration: deps
	bash scripts/run-integration.sh

test-molecule: deps
	bash scripts/run-molecule.sh

## test-ops: operations under traffic (tests/ops): zero-loss changes, Maglev disruption, rolling deploys, inventory-group backends; prints the tables
test-ops: deps
	$(PYTEST) -q -s tests/ops

sanity: deps
	bash scripts/sanity.sh

## lint: ansible-lint (production), changelog fragments, licences per file (REUSE), galaxy-importer on the built tarball
lint: deps
	cd $(CURDIR) && ansible-lint --profile production
	cd $(CURDIR) && antsibull-changelog lint
	cd $(CURDIR) && reuse lint --lines
	bash scripts/galaxy-importer.sh

bench-dataplane: deps
	$(PY) benchmarks/dataplane/run.py

## bench-forwarding: XDP generator (live frames) through the balancer: xdp_lb nat/dsr/redirect vs nftables DNAT vs plain forwarding, pps and CPU per packet (veth lab)
bench-forwarding: deps
	flock /tmp/xdplb-fwd.lock $(PY) benchmarks/forwarding/run.py --seconds 4 --repeat 5

## bench-fleet: site.yml first deploy and rerun on 1, 4, 12 SSH hosts next to ansible -m ping
bench-fleet: deps
	$(PY) benchmarks/fleet/run.py --hosts 1,4,12

## bench-controlplane: one change to a service with 1,000 backends (Maglev + map sync), real maps
bench-controlplane: deps
	$(PY) benchmarks/controlplane/run.py --backends 1000 --repeat 5

## bench-plots: docs/img/*.png from the benchmarks' results (build/bench-*/results.json)
bench-plots: deps
	$(PY) benchmarks/plot.py

clean:
	rm -rf build .pytest_cache tests/output
