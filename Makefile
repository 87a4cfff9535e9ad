# Two commands do everything on a fresh machine: `make demo` (main job on the lab) and `make test`.
# Set-up is idempotent: a stamp keyed on pyproject.toml's hash skips the install when nothing changed.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell sha256sum pyproject.toml | cut -c1-16)
TOPOLOGY ?= infra/topologies/lab.yaml
STACK    ?= lab

.PHONY: setup setup-lab setup-kubernetes lab-venv lab-packages pulumi-cli packages machine-limits demo test \
	test-unit bench soak clean help

help:
	@echo "make demo              set up what the lab needs, then run the main job on the lab topology"
	@echo "make test              set up everything, then run every test tier (JUnit XML in reports/)"
	@echo "make setup             install everything the tool and its tests need (idempotent)"
	@echo "make setup-lab         only what the lab and the demo use (no Kubernetes toolchain)"
	@echo "make setup-kubernetes  the Kubernetes toolchain, for stacks on the kubernetes substrate (~10 min cold)"
	@echo "make bench             print benchmark figures"
	@echo "make soak              30 min at the declared peak with no fault: false failovers (exit 1 on any)"

# Debian programs: the lab and the trading stack; the lab's Kubernetes clusters; the tests (the audit report's
# rendering in a headless browser).
LAB_PACKAGES := iproute2 nftables bird2 openssh-server openssh-client procps postgresql etcd-server etcd-client \
                patroni python3-etcd haproxy keepalived supervisor python3-venv curl \
                prometheus prometheus-alertmanager
CLUSTER_PACKAGES := containerd runc containernetworking-plugins busybox-static gcc libc6-dev
TEST_PACKAGES := chromium poppler-utils
# booted Debian machines in the lab (lab/machines.py): the base image's builder, the container manager, and the
# package proxy and time server the machines use (the lab runs its own; the packages' services are never started)
MACHINE_PACKAGES := debootstrap systemd-container apt-cacher-ng chrony

setup: setup-lab setup-kubernetes
	@$(MAKE) --no-print-directory packages PACKAGES="$(TEST_PACKAGES) $(MACHINE_PACKAGES)"
	@$(MAKE) --no-print-directory machine-limits
	@# the S3 server with Object Lock the evidence store's tests run against (from its Go module, once per version)
	@infra/toolchain/build-versitygw.sh

# A booted machine's init, logind and getty hold inotify instances against one limit for root, summed over every
# machine (128 by default; lab.yaml's 14 machines hold about 128): raised as container hosts do, never lowered,
# and kept over a reboot (lab/machines.py INOTIFY_WANTED)
INOTIFY_INSTANCES := 8192
machine-limits:
	@now=$$(cat /proc/sys/fs/inotify/max_user_instances); \
	if [ "$$now" -lt $(INOTIFY_INSTANCES) ]; then \
	  if [ "$$(id -u)" != 0 ]; then \
	    echo "fs.inotify.max_user_instances is $$now; booted machines need $(INOTIFY_INSTANCES) (run make setup as root)"; \
	    exit 3; fi; \
	  echo "raising fs.inotify.max_user_instances from $$now to $(INOTIFY_INSTANCES) (booted machines)"; \
	  echo "fs.inotify.max_user_instances = $(INOTIFY_INSTANCES)" > /etc/sysctl.d/60-tradestack-machines.conf; \
	  sysctl -q -w fs.inotify.max_user_instances=$(INOTIFY_INSTANCES); \
	fi

# The venv, the lab's Debian programs and the Pulumi CLI (from Go modules at the SDK's version, cached outside
# the clone): all the demo uses. The Pulumi build (minutes, cold) runs beside the packages and the venv.
PULUMI_VERSION := $(shell sed -n 's/^ *"pulumi==\([0-9.]*\)".*/\1/p' pyproject.toml)
setup-lab:
	@$(MAKE) --no-print-directory -j2 lab-venv pulumi-cli

lab-venv: lab-packages
	@$(MAKE) --no-print-directory $(STAMP)

lab-packages:
	@$(MAKE) --no-print-directory packages PACKAGES="$(LAB_PACKAGES)"

pulumi-cli:
	@infra/toolchain/build-pulumi.sh $(PYTHON) $(PULUMI_VERSION)

# Pulumi's Kubernetes provider at its SDK's version and Kubernetes itself (one binary), from Go modules, with
# the Debian programs the lab's clusters run (skipped when already built).
setup-kubernetes: setup-lab
	@$(MAKE) --no-print-directory packages PACKAGES="$(CLUSTER_PACKAGES)"
	@infra/toolchain/build-pulumi-kubernetes.sh $(BIN)/python
	@infra/toolchain/build-kubernetes.sh

# Debian packages not yet installed, installed (checked first, so a machine that has them is not touched). Their
# services are not started (policy-rc.d, for the install only): the lab starts what it needs, where it needs it.
packages:
	@missing=$$(for p in $(PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != 0 ]; then echo "missing Debian packages: $$missing (run make setup as root)"; exit 3; fi; \
	  echo "installing: $$missing"; \
	  policy=; if [ ! -e /usr/sbin/policy-rc.d ]; then policy=/usr/sbin/policy-rc.d; \
	    printf '#!/bin/sh\nexit 101\n' > $$policy; chmod 755 $$policy; trap 'rm -f $$policy' EXIT; fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "tradestack needs Python 3.11+")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@rm -f $(VENV)/.installed-*
	@touch $@

demo: setup-lab
	$(BIN)/tradestack topology validate $(TOPOLOGY)
	$(BIN)/tradestack capacity check $(TOPOLOGY)
	$(BIN)/tradestack stack up --stack $(STACK) --topology $(TOPOLOGY)
	$(BIN)/tradestack deploy --stack $(STACK)
	$(BIN)/tradestack status --stack $(STACK)
	@# a verdict that fails (exit 1) is the demo's result, shown in full; any other error stops it
	$(BIN)/tradestack drill run site-power-loss --stack $(STACK) || [ $$? -eq 1 ]
	$(BIN)/tradestack audit run --stack $(STACK) --out reports/audit

test: setup
	$(BIN)/pytest -n 2 --dist loadgroup --junitxml=reports/junit.xml

test-unit: setup
	$(BIN)/pytest -m unit

# Every figure of the README's benchmark table; each lab benchmark deploys a lab of its own (about 60 min).
bench: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python tests/bench/bench_capacity.py
	$(BIN)/python tests/bench/bench_peak.py
	$(BIN)/python tests/bench/bench_lab.py
	$(BIN)/python tests/bench/bench_refstack.py
	$(BIN)/python tests/bench/bench_deploy.py
	$(BIN)/python tests/bench/bench_cpu.py
	$(BIN)/python tests/bench/bench_drills.py
	$(BIN)/python tests/bench/bench_k8s_eviction.py
	$(BIN)/python tests/bench/bench_machines.py
	$(BIN)/python tests/bench/bench_make_test.py

# Issue 33: the declared peak for 30 minutes with no fault on a lab of its own; exit 1 on any false failover.
soak: setup
	$(BIN)/python tests/bench/soak.py --minutes 30

clean:
	rm -rf $(VENV) reports .pytest_cache
