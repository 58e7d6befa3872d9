# onprem.deepseek — developer entry points. `make help` lists them.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
COLL_ROOT := build/collections
COLL_LINK := $(COLL_ROOT)/ansible_collections/onprem/deepseek

IMAGE ?= localhost/onprem-debian12-systemd:latest
DEMO_NAME ?= onprem-demo
export CONTAINERS_CONF := $(CURDIR)/molecule/containers.conf
export ANSIBLE_COLLECTIONS_PATH := $(CURDIR)/$(COLL_ROOT)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: help deps venv test-vm collection image demo demo-down test lint sanity units integration molecule bench build ee clean

help: ## List the targets
	@grep -E '^[a-z%-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

deps: ## Install the Debian/Ubuntu packages the demo and the tests need (podman, debootstrap, venv, ...)
	bash tests/setup-host.sh

$(BIN)/ansible-playbook: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@

venv: $(BIN)/ansible-playbook ## Python virtualenv with ansible-core, the bundled collections and test tools

collection: ## Link the checkout where Ansible looks for onprem.deepseek
	@mkdir -p $(dir $(COLL_LINK))
	@ln -sfn $(CURDIR) $(COLL_LINK)

image: ## Build the Debian 12 systemd test image (debootstrap + podman import) if missing
	bash tests/image/build.sh

demo: deps venv collection image ## Start the demo container and deploy the whole stack onto it
	bash tests/demo.sh up
	$(BIN)/ansible-playbook -i inventories/demo tests/demo/removable_media.yml
	$(BIN)/ansible-playbook -i inventories/demo site.yml
	$(BIN)/ansible-playbook -i inventories/demo playbooks/demo_verify.yml

demo-down: ## Remove the demo container
	bash tests/demo.sh down

test: deps venv collection image ## lint, sanity, units, integration, molecule; prints a summary line
	bash tests/run.sh all

test-vm: deps venv collection ## LUKS on Debian's kernel under qemu (slow: ~20 min; installs qemu)
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends qemu-system-x86 qemu-utils e2fsprogs openssh-client
	ONPREM_VM_TESTS=1 PYTHONPATH=$(COLL_ROOT) $(BIN)/pytest -p no:cacheprovider -v \
	  tests/integration/test_secure_storage_vm.py tests/integration/test_secure_storage_no_log.py

lint: venv collection ## yamllint, ruff, ansible-lint (production profile)
	bash tests/run.sh lint

sanity: venv ## ansible-test sanity on a copy under ansible_collections/onprem/deepseek
	bash tests/run.sh sanity

units: venv ## ansible-test units
	bash tests/run.sh units

integration: venv collection ## pytest tests/integration (real services on loopback)
	bash tests/run.sh integration

molecule: venv collection image ## every molecule scenario
	bash tests/run.sh molecule

ee: venv ## Build context of the AWX execution environment (build/ee/context; then ansible-builder build)
	rm -rf build/ee && $(BIN)/ansible-galaxy collection build --output-path build/ee .
	$(BIN)/ansible-builder create -f execution-environment.yml --context build/ee/context

bench: deps venv collection image ## BENCH lines for every figure this machine can measure
	bash tests/bench/run.sh

bench-%: venv collection ## One benchmark: bench-sm4, bench-fetch, bench-gateway, bench-demo
	@if [ -f tests/bench/bench_$*.py ]; then PYTHONPATH=$(COLL_ROOT) $(BIN)/python tests/bench/bench_$*.py; \
	else bash tests/bench/bench_$*.sh; fi

build: venv ## ansible-galaxy collection build into build/
	$(BIN)/ansible-galaxy collection build --force --output-path build/ .

clean: demo-down ## Remove build outputs (keeps the virtualenv and the image)
	rm -rf build tests/output .pytest_cache .ruff_cache
