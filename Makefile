# pulselake: two commands matter. `make demo` runs the whole platform locally;
# `make test` runs every test. Both install what they need on a new machine.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
# checkov gets a venv of its own: its pins clash with aws-sam-cli's boto3.
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed
# schemathesis and fhir.resources (the partner API's independent checkers) likewise.
PARTNERS_VENV := .venv-partners
PARTNERS_STAMP := $(PARTNERS_VENV)/.installed
CARGO ?= cargo
FUNCTIONS := $(notdir $(wildcard functions/*))
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: help venv build test unit integration lint demo bench lambda deploy fmt clean-local

help:
	@echo "make demo     run the platform locally (moto, simulated fleet) and report what happened"
	@echo "make test     unit tests, integration tests on the local stack, template lint"
	@echo "make bench    benchmarks (throughput and peak memory)"
	@echo "make lambda   build every function for AWS Lambda (arm64, release)"
	@echo "make deploy   sam build + sam deploy --guided"

# The project-local Python environment: moto, cargo-lambda, cfn-lint, duckdb, jsonschema (all pinned).
# HL7's FHIR R4 JSON Schema comes with it (pinned tarball, checked by SHA-256).
$(STAMP): tools/requirements.txt tools/fetch_fhir_schema.py
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r tools/requirements.txt
	$(VENV)/bin/python tools/fetch_fhir_schema.py $(VENV)/fhir.schema.json
	@touch $(STAMP)

$(CHECKOV_STAMP): tools/requirements-checkov.txt
	@test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r tools/requirements-checkov.txt
	@touch $(CHECKOV_STAMP)

$(PARTNERS_STAMP): tools/requirements-partners.txt
	@test -x $(PARTNERS_VENV)/bin/python || $(PYTHON) -m venv $(PARTNERS_VENV)
	$(PARTNERS_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r tools/requirements-partners.txt
	@touch $(PARTNERS_STAMP)

venv: $(STAMP) $(CHECKOV_STAMP) $(PARTNERS_STAMP)

build:
	$(CARGO) build --workspace --all-targets

# One cargo invocation builds and runs everything: unit tests of every crate, and the
# integration tests (integration-tests/tests) that start their own moto servers.
test: $(STAMP) $(PARTNERS_STAMP) lint
	$(CARGO) test --workspace --all-targets
	@echo "make test: all tests passed"

unit:
	$(CARGO) test --workspace --lib --bins --exclude pulselake-local

integration: $(STAMP) $(PARTNERS_STAMP)
	$(CARGO) test -p pulselake-local

# cfn-lint, and checkov with zero failed checks: a check may only be skipped in the
# template itself, with its reason (a test holds every skip to that); rustfmt, and
# clippy with every warning an error.
lint: $(STAMP) $(CHECKOV_STAMP)
	$(VENV)/bin/cfn-lint template.yaml
	$(CHECKOV_VENV)/bin/checkov -f template.yaml --framework cloudformation --compact --quiet --skip-download
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --quiet -- -D warnings

demo: $(STAMP)
	@echo "building the demo (the first build after make test compiles its own feature set: minutes)"
	$(CARGO) build -p pulselake-local --bin demo
	$(CARGO) run --quiet -p pulselake-local --bin demo -- $(ARGS)

# The functions run with these glibc settings (template.yaml Globals), so the bench does too.
# Each bench calibrates itself and compares with bench/baseline.json (fails on a regression
# beyond its tolerance); PULSELAKE_BENCH_RECORD=1 records a new baseline. The venv holds
# the Python peers (bench/peers) the stream figures are compared with.
GLIBC_TUNABLES := glibc.malloc.trim_threshold=268435456:glibc.malloc.mmap_threshold=33554432
bench: $(STAMP)
	GLIBC_TUNABLES=$(GLIBC_TUNABLES) $(CARGO) bench -p stream-ingest -p file-ingest -p vitals-alert -p export-worker -p pulselake-lake

# Release arm64 binaries, as SAM deploys them (cargo-lambda cross-compiles with Zig).
lambda: $(STAMP)
	rustup target add aarch64-unknown-linux-gnu >/dev/null
	$(VENV)/bin/cargo-lambda lambda build --release --arm64 $(addprefix -p ,$(FUNCTIONS))
	@ls -l target/lambda/*/bootstrap

deploy: $(STAMP)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r tools/requirements-deploy.txt
	$(VENV)/bin/sam build --beta-features
	$(VENV)/bin/sam deploy --guided

fmt:
	$(CARGO) fmt --all

clean-local:
	rm -rf target/moto-logs
