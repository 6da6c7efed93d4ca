# wasmstate: `make run` starts the host with the examples deployed;
# `make test` runs the whole test suite; `make bench` measures the release host.

CARGO      ?= cargo
LISTEN     ?= 127.0.0.1:8080
DATA_DIR   ?= ./data
GUEST_OUT  := target/guests/wasm32-wasip2/release
EXAMPLES   := -p shopping-cart -p counter -p user-profile -p order-validator -p cart-projection \
              -p order-workflow -p inventory -p reminders -p fraud-detector -p poll -p board

.PHONY: run test lint bench examples host toolchain clean-data browser-deps schemathesis

## Install the guest target if this toolchain lacks it.
toolchain:
	@rustup target list --installed 2>/dev/null | grep -q '^wasm32-wasip2$$' || rustup target add wasm32-wasip2

## Build the example entities as components.
examples: toolchain
	$(CARGO) build --release --target wasm32-wasip2 --target-dir target/guests $(EXAMPLES)

## The browser test's driver, playwright-core, from npm at the version
## tests/browser/package-lock.json pins, into target/browser (it drives
## Debian's /usr/bin/chromium: no browser is downloaded).
BROWSER_DIR := target/browser
$(BROWSER_DIR)/node_modules/playwright-core/package.json: tests/browser/package.json tests/browser/package-lock.json
	mkdir -p $(BROWSER_DIR)
	cp tests/browser/package.json tests/browser/package-lock.json $(BROWSER_DIR)/
	cd $(BROWSER_DIR) && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --ignore-scripts --no-audit --no-fund
	touch $@
browser-deps: $(BROWSER_DIR)/node_modules/playwright-core/package.json

## The OpenAPI test's checker, schemathesis, from PyPI at a pinned version,
## in a virtualenv under target/schemathesis (Python 3.11 or later with venv).
SCHEMATHESIS_VERSION := 4.32.5
SCHEMATHESIS_DIR := target/schemathesis
$(SCHEMATHESIS_DIR)/.installed-$(SCHEMATHESIS_VERSION):
	rm -rf $(SCHEMATHESIS_DIR)
	python3 -m venv $(SCHEMATHESIS_DIR)
	$(SCHEMATHESIS_DIR)/bin/pip install --quiet --disable-pip-version-check 'schemathesis==$(SCHEMATHESIS_VERSION)'
	touch $@
schemathesis: $(SCHEMATHESIS_DIR)/.installed-$(SCHEMATHESIS_VERSION)

## Build the host.
host:
	$(CARGO) build -p wasmstate

## Start the host on $(DATA_DIR) with the examples deployed.
run: host examples
	@echo
	@echo "Try it (in another terminal):"
	@echo "  curl -X POST http://$(LISTEN)/v1/services/shopping-cart/entities/foo/AddItem -d '{\"productId\":\"A14362347\",\"name\":\"Deluxe\",\"quantity\":5}'"
	@echo "  curl -X POST http://$(LISTEN)/v1/services/shopping-cart/entities/foo/GetCart"
	@echo "  curl http://$(LISTEN)/v1/services/shopping-cart/entities/foo/events"
	@echo "  curl 'http://$(LISTEN)/v1/services/shopping-cart/entities/foo/state?at=1'"
	@echo "  curl -X POST 'http://$(LISTEN)/v1/services/shopping-cart/entities/foo/RemoveItem?dry_run=true' -d '{\"productId\":\"A14362347\"}'"
	@echo "  curl -X POST http://$(LISTEN)/v1/services/counter/entities/c1/Increase -d '{\"value\":3}'"
	@echo "  curl -X POST http://$(LISTEN)/v1/services/user-profile/entities/ada/Update -d '{\"name\":\"Ada\",\"email\":\"ada@example.com\"}'"
	@echo "  curl -X POST http://$(LISTEN)/v1/services/order-validator/entities/any/PlaceOrder -d '{\"cartId\":\"foo\",\"productId\":\"P1\",\"name\":\"Pen\",\"quantity\":2}'"
	@echo "  curl -X POST http://$(LISTEN)/v1/services/counter/entities/items-added/Get"
	@echo "  curl -N 'http://$(LISTEN)/v1/services/shopping-cart/entities/foo/events?follow=true'"
	@echo "  curl -X POST http://$(LISTEN)/v1/services/inventory/entities/main/Restock -d '{\"productId\":\"P1\",\"quantity\":10}'"
	@echo "  curl -X POST http://$(LISTEN)/v1/services/orders/entities/o-1/Place -d '{\"items\":[{\"productId\":\"P1\",\"quantity\":2}],\"paymentTimeoutSecs\":30}'"
	@echo "  curl -X POST http://$(LISTEN)/v1/services/orders/entities/o-1/Pay -d '{\"paymentId\":\"pay-1\"}'"
	@echo "  curl -X POST http://$(LISTEN)/v1/services/reminders/entities/ada/Subscribe -d '{\"cron\":\"*/10 * * * * *\",\"timeZone\":\"Europe/Paris\"}'"
	@echo "  curl http://$(LISTEN)/v1/services/reminders/entities/ada/timers"
	@echo "  # fraud-detector may reach 127.0.0.1:9100 only (see examples/fraud-detector/README.md for a receiver there):"
	@echo "  curl -X POST http://$(LISTEN)/v1/services/fraud-detector/entities/acc-1/configure -d '{\"case_system_url\":\"http://127.0.0.1:9100/cases\"}'"
	@echo "  curl -X POST http://$(LISTEN)/v1/services/fraud-detector/entities/acc-1/record -d '{\"id\":\"tx-1\",\"amount_cents\":2000,\"merchant\":\"Bakery\",\"country\":\"NL\"}'"
	@echo "  curl -X POST http://$(LISTEN)/v1/services/poll/entities/lunch/AddOption -d '{\"option\":\"pizza\"}'"
	@echo "  curl -X POST http://$(LISTEN)/v1/services/poll/entities/lunch/Vote -d '{\"voter\":\"ada\",\"option\":\"pizza\"}'"
	@echo "  curl -X POST http://$(LISTEN)/v1/services/board/entities/team/Add -d '{\"id\":\"milk\",\"text\":\"Buy milk\"}'"
	@echo "  curl -N 'http://$(LISTEN)/v1/services/board/entities/team/events?follow=true'"
	@echo "  curl http://$(LISTEN)/v1/services"
	@echo "Or open the console: http://$(LISTEN)/"
	@echo
	target/debug/wasmstate serve --listen $(LISTEN) --data-dir $(DATA_DIR) \
		--deploy shopping-cart=$(GUEST_OUT)/shopping_cart.wasm \
		--deploy counter=$(GUEST_OUT)/counter.wasm \
		--deploy user-profile=$(GUEST_OUT)/user_profile.wasm \
		--deploy order-validator=$(GUEST_OUT)/order_validator.wasm \
		--deploy 'cart-projection=$(GUEST_OUT)/cart_projection.wasm?subscribe=shopping-cart' \
		--deploy orders=$(GUEST_OUT)/order_workflow.wasm \
		--deploy inventory=$(GUEST_OUT)/inventory.wasm \
		--deploy reminders=$(GUEST_OUT)/reminders.wasm \
		--deploy 'fraud-detector=$(GUEST_OUT)/fraud_detector.wasm?allow_http=127.0.0.1:9100' \
		--deploy poll=$(GUEST_OUT)/poll.wasm \
		--deploy board=$(GUEST_OUT)/board.wasm

## Run every test: unit tests, SDK and example tests, black-box tests —
## then the black-box suite again on the PostgreSQL journal (a throwaway
## server the tests start themselves, or $$WASMSTATE_TEST_PG). The
## disk tests (in process on redb's injected storage, and on a real full
## tmpfs) are about the embedded journal, and `wasmstate new` about no
## journal, so they run once, in the first pass. Both passes select the whole
## workspace, so they share one feature resolution and the second builds
## nothing again.
test: toolchain host browser-deps schemathesis
	$(CARGO) test --workspace
	WASMSTATE_TEST_JOURNAL=postgres $(CARGO) test --workspace --test black_box -- --skip disk_failure:: --skip full_disk:: --skip scaffold::

## The gates CI enforces before the tests: formatting and lints.
lint: toolchain
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## Measure the release host: load scenarios, cold paths and their ceilings.
## Prints a table and writes target/bench/results.json. BENCH_ARGS=--quick
## shortens every run; BENCH_ARGS="2 6" runs only those scenarios.
## One cargo invocation builds both, so they share one feature resolution
## and the `cargo run` below rebuilds nothing.
bench: toolchain
	$(CARGO) build --release -p wasmstate -p wasmstate-bench --bin wasmstate --bin bench
	WASMSTATE_BIN=target/release/wasmstate $(CARGO) run --release -p wasmstate-bench --bin bench -- $(BENCH_ARGS)

## Remove the local data directory of `make run`.
clean-data:
	rm -rf $(DATA_DIR)
