# wasmstate: `make run` starts the host with the examples deployed;
# `make test` runs the whole test suite.

CARGO      ?= cargo
LISTEN     ?= 127.0.0.1:8080
DATA_DIR   ?= ./data
GUEST_OUT  := target/guests/wasm32-wasip2/release
EXAMPLES   := -p shopping-cart -p counter

.PHONY: run test examples host toolchain clean-data

## Install the guest target if this toolchain lacks it.
toolchain:
	@rustup target list --installed 2>/dev/null | grep -q '^wasm32-wasip2$$' || rustup target add wasm32-wasip2

## Build the example entities as components.
examples: toolchain
	$(CARGO) build --release --target wasm32-wasip2 --target-dir target/guests $(EXAMPLES)

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
	@echo "  curl -X POST http://$(LISTEN)/v1/services/counter/entities/c1/Increase -d '{\"value\":3}'"
	@echo "  curl http://$(LISTEN)/v1/services"
	@echo
	target/debug/wasmstate serve --listen $(LISTEN) --data-dir $(DATA_DIR) \
		--deploy shopping-cart=$(GUEST_OUT)/shopping_cart.wasm \
		--deploy counter=$(GUEST_OUT)/counter.wasm

## Run every test: unit tests, SDK and example tests, black-box tests.
test: toolchain host
	$(CARGO) test --workspace

## Remove the local data directory of `make run`.
clean-data:
	rm -rf $(DATA_DIR)
