# The newcomer's commands: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RUNTIME := $(VENV)/.installed-runtime

.PHONY: setup test lint demo demo-cluster bench clean image push install uninstall unistall

# The image (Dockerfile) and where it goes: `make image push REGISTRY=quay.io/me TAG=dev`.
REGISTRY ?= localhost:5000
TAG ?= $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
IMAGE ?= $(REGISTRY)/stats-log-collector:$(TAG)
CONTAINER_ENGINE ?= docker
# The base of both stages (the Dockerfile's PYTHON_IMAGE); empty: the Dockerfile's default.
PYTHON_IMAGE ?=
# The cluster (KUBECONFIG) side: the namespace the collector runs in. Not NAMESPACE, which is the
# collector's own setting (where the VMs are) and is set in deploy/base/deployment.yaml.
INSTALL_NAMESPACE ?= stats-log-collector
STORAGE_CLASS ?=
# What to install: a folder of deploy/overlays (default, openshift, procfs, monitoring) or a kustomization
# of your own, plus components of deploy/components (procfs, monitoring, exec-source, kubelet-proxy).
OVERLAY ?= default
COMPONENTS ?=
KUBECTL ?= kubectl
DEPLOY_ENV = INSTALL_NAMESPACE='$(INSTALL_NAMESPACE)' IMAGE='$(IMAGE)' STORAGE_CLASS='$(STORAGE_CLASS)' \
	OVERLAY='$(OVERLAY)' COMPONENTS='$(COMPONENTS)' KUBECTL='$(KUBECTL)'

# The virtualenv with the project, its test extras and the KubeVirt test cluster (testcluster/, a
# distribution of its own); redone when either pyproject.toml changes.
$(STAMP): pyproject.toml testcluster/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -U pip
	$(BIN)/pip install -q -e '.[test]' -e ./testcluster
	touch $@ $(RUNTIME)

# The demo needs the package only: a first `make demo` skips the test tools (half the install time).
$(RUNTIME): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -U pip
	$(BIN)/pip install -q -e .
	touch $@

setup: $(STAMP)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/hadolint --failure-threshold style Dockerfile

test: lint
	$(BIN)/pytest

# Real QEMU VMs on this machine, watched by virtlet-log and memstat; installs QEMU and busybox-static
# with apt-get when run as root, else prints the command to run first. Data in demo-data/.
demo: $(RUNTIME)
	$(BIN)/stats-log-collector demo

# The KubeVirt test cluster on 127.0.0.1 (a real HTTP server speaking the Kubernetes API) for kubectl.
demo-cluster: setup
	$(BIN)/python -m kubevirt_test_cluster --kubeconfig $(CURDIR)/demo-data/kubeconfig

# Every bench/bench_*.py in turn, each side by side with its reference (bench_virtlet_log.py installs
# rsyslog with apt-get when run as root).
bench: setup
	@set -e; for script in bench/bench_*.py; do echo "== $$script"; $(BIN)/python $$script; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis build *.egg-info src/*.egg-info \
		testcluster/build testcluster/src/*.egg-info

# With buildah where its default isolation cannot run (no cgroup v2 delegation), export
# BUILDAH_ISOLATION=chroot: buildah reads it, docker and podman ignore it.
image:
	$(CONTAINER_ENGINE) build $(if $(PYTHON_IMAGE),--build-arg PYTHON_IMAGE=$(PYTHON_IMAGE)) -t $(IMAGE) .

push: image
	$(CONTAINER_ENGINE) push $(IMAGE)

# `kubectl kustomize` of OVERLAY (and COMPONENTS) onto the cluster KUBECONFIG points at, with the RBAC
# bindings its settings need; again after editing a manifest.
install:
	$(DEPLOY_ENV) deploy/install.sh install

# Everything install made, the PVC and its data included.
uninstall:
	$(DEPLOY_ENV) deploy/install.sh uninstall

# A common misspelling of uninstall, kept as an alias.
unistall: uninstall
