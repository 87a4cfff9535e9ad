# Two commands do everything on a fresh machine: `make demo` (main job on the lab) and `make test`.
# Set-up is idempotent: a stamp keyed on pyproject.toml's hash skips the install when nothing changed.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell sha256sum pyproject.toml | cut -c1-16)
TOPOLOGY ?= infra/topologies/lab.yaml

.PHONY: setup system toolchain demo test test-unit bench clean help

help:
	@echo "make setup   install everything the tool and its tests need (idempotent)"
	@echo "make demo    set up, then run the main job on the lab topology"
	@echo "make test    set up, then run every test tier (JUnit XML in reports/)"
	@echo "make bench   print benchmark figures"

DEBIAN_PACKAGES := iproute2 nftables bird2 openssh-server openssh-client procps postgresql \
                   etcd-server etcd-client patroni python3-etcd haproxy keepalived supervisor python3-venv \
                   chromium containerd runc containernetworking-plugins busybox-static gcc libc6-dev curl

setup: $(STAMP) system toolchain

# Debian programs the lab runs (checked first, so a machine that has them is not touched).
system:
	@missing=$$(for p in $(DEBIAN_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != 0 ]; then echo "missing Debian packages: $$missing (run make setup as root)"; exit 3; fi; \
	  echo "installing: $$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

# Built from Go modules at pinned versions, cached outside the clone (skipped when already built): the Pulumi
# CLI and its Kubernetes provider at their SDKs' versions, and Kubernetes itself (one binary).
toolchain: $(STAMP)
	@infra/toolchain/build-pulumi.sh $(BIN)/python
	@infra/toolchain/build-pulumi-kubernetes.sh $(BIN)/python
	@infra/toolchain/build-kubernetes.sh

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "tradestack needs Python 3.11+")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@rm -f $(VENV)/.installed-*
	@touch $@

demo: setup
	$(BIN)/tradestack topology validate $(TOPOLOGY)
	$(BIN)/tradestack capacity check $(TOPOLOGY)
	$(BIN)/tradestack stack up --stack lab --topology $(TOPOLOGY)
	$(BIN)/tradestack deploy --stack lab
	$(BIN)/tradestack status --stack lab
	@# a verdict that fails (exit 1) is the demo's result, shown in full; any other error stops it
	$(BIN)/tradestack drill run carrier-outage --stack lab || [ $$? -eq 1 ]
	$(BIN)/tradestack audit run --stack lab --out reports/audit

test: setup
	$(BIN)/pytest -n 2 --dist loadgroup --junitxml=reports/junit.xml

test-unit: setup
	$(BIN)/pytest -m unit

# Every figure of the README's benchmark table; each lab benchmark deploys a lab of its own (about 60 min).
bench: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python tests/bench/bench_capacity.py
	$(BIN)/python tests/bench/bench_lab.py
	$(BIN)/python tests/bench/bench_refstack.py
	$(BIN)/python tests/bench/bench_deploy.py
	$(BIN)/python tests/bench/bench_cpu.py
	$(BIN)/python tests/bench/bench_drills.py
	$(BIN)/python tests/bench/bench_k8s_eviction.py
	$(BIN)/python tests/bench/bench_make_test.py

clean:
	rm -rf $(VENV) reports .pytest_cache
