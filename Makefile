# rulehost: build, test and measure. `make run` and `make test` work on a fresh machine.
CARGO ?= cargo
RULES_DIR := target/rules
RULE_CRATES := $(notdir $(patsubst %/,%,$(dir $(wildcard rules-wasm/*/Cargo.toml))))
RULE_CRATES := $(filter-out sdk build sigma sigma-pack,$(RULE_CRATES))
SAMPLE := examples/soft-cell-sample.jsonl

PYSIGMA := target/pysigma
## Tools the tests run beside rulehost, installed from crates.io into a cache of the machine
## ($XDG_CACHE_HOME or ~/.cache, then rulehost-dev/tools: apart from rulehost/, where the
## binary caches components) that target/tools links to. A clean checkout on the same machine
## (a later CI run, another worktree, after `cargo clean`) finds them built. Make looks for a
## tool before it links target/tools, so each install looks again first. A target/tools that
## is already a directory is used as it is.
TOOLS := target/tools
TOOLS_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/rulehost-dev/tools
WASMSIGN2 := $(TOOLS)/bin/wasmsign2
## The Kafka-protocol broker the Kafka tests consume from: ~15 minutes to build cold on two
## cores, once per machine; later runs find it in the tools cache.
TANSU := $(TOOLS)/tansu-0.6.0-libsql/bin/tansu

.PHONY: all setup build rules run test unit-tests integration-tests lint fmt bench man clean pysigma wasmsign2 registry tansu rsigma fuzz fuzz-smoke fuzz-setup

all: build

## Installs what the build needs: the Wasm targets of the toolchain (wasm32-wasip2 only
## builds the test rule that the sandbox must refuse for importing WASI).
setup:
	@for target in wasm32-unknown-unknown wasm32-wasip2; do \
		rustup target list --installed 2>/dev/null | grep -qx $$target || rustup target add $$target; \
	done

## The host binary (it builds and bundles the Soft Cell rule).
build: setup
	$(CARGO) build --release -p rulehost

## Every rule crate under rules-wasm/ as a component in target/rules/; signed with the
## key at $$RULEHOST_SIGNING_KEY when it is set.
rules: setup build
	$(CARGO) run --release -q -p rule-build -- $(RULES_DIR) $(RULE_CRATES)
	@if [ -n "$$RULEHOST_SIGNING_KEY" ]; then \
		for rule in $(RULES_DIR)/*.wasm; do \
			./target/release/rulehost sign --key "$$RULEHOST_SIGNING_KEY" "$$rule" || exit 1; \
		done; \
	fi

## Build everything, then evaluate the bundled sample with the bundled rule.
run: build rules
	./target/release/rulehost inspect $(RULES_DIR)/soft-cell.wasm
	@echo
	./target/release/rulehost eval --rules $(RULES_DIR)/soft-cell.wasm $(SAMPLE)

$(TOOLS):
	mkdir -p "$(TOOLS_CACHE)" $(dir $(TOOLS))
	ln -sfn "$(TOOLS_CACHE)" $(TOOLS)

## pySigma in a virtual environment, the reference of the Sigma differential test.
pysigma: $(PYSIGMA)/installed

$(PYSIGMA)/installed: tests/pysigma/requirements.txt
	python3 -m venv $(PYSIGMA)
	$(PYSIGMA)/bin/pip install --quiet --disable-pip-version-check -r tests/pysigma/requirements.txt
	touch $@

## The wasmsign2 command-line tool, which the signing tests interoperate with.
wasmsign2: $(WASMSIGN2)

$(WASMSIGN2): | $(TOOLS)
	test -x $@ || $(CARGO) install wasmsign2-cli --version 0.2.8 --locked --root $(TOOLS)

## The Kafka-protocol broker the Kafka tests and bench start on loopback: tansu, with its
## memory engine (dynostore) and its SQLite one (libsql: storage that outlives a restart of
## the broker). Built once per machine, by its own path, so a change of features builds anew.
tansu: $(TANSU)

$(TANSU): | $(TOOLS)
	test -x $@ || $(CARGO) install tansu --version 0.6.0 --locked --features dynostore,libsql --root $(TOOLS)/tansu-0.6.0-libsql

## A peer for `BENCH_ONLY=peer make bench` (not in the full run, nor in the tests): RSigma, a
## Sigma engine in Rust from crates.io (0.23.0: the last that builds with this toolchain);
## about 15 minutes to build cold on two cores, once per machine.
RSIGMA := $(TOOLS)/rsigma-0.23.0/bin/rsigma

rsigma: $(RSIGMA)

$(RSIGMA): | $(TOOLS)
	test -x $@ || $(CARGO) install rsigma --version 0.23.0 --locked --root $(TOOLS)/rsigma-0.23.0

## The OCI registry the registry tests push to and pull from: Debian's docker-registry (the
## CNCF distribution registry, 2.8). The tests start their own, on loopback ports, with
## storage in temporary directories; the package's own service is not used.
REGISTRY_BIN := /usr/bin/docker-registry
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

registry: $(REGISTRY_BIN)

$(REGISTRY_BIN):
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends docker-registry || \
		{ $(SUDO) apt-get update && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends docker-registry; }

## Fuzzing (cargo-fuzz, nightly): every target for FUZZ_SECONDS each, seeded from tests/data
## and ../shared/data; what a target finds lands in target/fuzz/artifacts/TARGET/ and fails
## the run. `make fuzz-smoke` is the short run CI makes.
FUZZ_TARGETS := json_lines json_documents csv evtx_xml evtx_binary containers dismissal artifact trust_policy sigma_rule alert_fit
FUZZ_SECONDS ?= 600
FUZZ_DIR := target/fuzz
CARGO_FUZZ := $(TOOLS)/bin/cargo-fuzz

$(CARGO_FUZZ): | $(TOOLS)
	test -x $@ || $(CARGO) install cargo-fuzz --version 0.13.1 --locked --root $(TOOLS)

fuzz-setup: $(CARGO_FUZZ) rules
	rustup target list --installed --toolchain nightly | grep -qx wasm32-unknown-unknown || \
		rustup target add --toolchain nightly wasm32-unknown-unknown
	python3 fuzz/seed.py $(FUZZ_DIR) $(RULES_DIR)/soft-cell.wasm
	PATH="$(abspath $(TOOLS))/bin:$$PATH" cargo +nightly fuzz build --fuzz-dir fuzz

fuzz: fuzz-setup
	@for target in $(FUZZ_TARGETS); do \
		mkdir -p $(FUZZ_DIR)/corpus/$$target $(FUZZ_DIR)/artifacts/$$target; \
		echo "fuzz: $$target for $(FUZZ_SECONDS) s"; \
		PATH="$(abspath $(TOOLS))/bin:$$PATH" cargo +nightly fuzz run --fuzz-dir fuzz $$target \
			$(FUZZ_DIR)/corpus/$$target $(FUZZ_DIR)/seeds/$$target -- \
			-max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=4096 -timeout=20 \
			-artifact_prefix=$(FUZZ_DIR)/artifacts/$$target/ -print_final_stats=1 \
			2> $(FUZZ_DIR)/$$target.log || { tail -40 $(FUZZ_DIR)/$$target.log; exit 1; }; \
		grep -E "stat::number_of_executed_units|stat::peak_rss_mb" $(FUZZ_DIR)/$$target.log; \
	done

fuzz-smoke:
	$(MAKE) fuzz FUZZ_SECONDS=15

## Unit and integration tests, in the release profile (one build serves both).
test: setup lint pysigma wasmsign2 registry tansu
	$(CARGO) test --release --workspace

unit-tests: setup
	$(CARGO) test --release --workspace --lib --bins

integration-tests: setup pysigma wasmsign2 registry tansu
	$(CARGO) test --release -p rulehost --test all

lint: setup
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

## Benchmarks; figures go to BENCHMARKS.md by hand, as ratios.
bench: build
	$(CARGO) run --release -p rulehost-bench

## The man page, generated from the command-line definitions.
man: build
	mkdir -p target/man
	./target/release/rulehost man > target/man/rulehost.1

clean:
	$(CARGO) clean
