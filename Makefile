# The two commands: `make run` (a working node with embedded defaults) and
# `make test` (installs what is missing, builds with ASan+UBSan, runs ctest,
# then the unit tests again in the release build: -O3 with _FORTIFY_SOURCE
# and LTO sees overflows inside one struct, which ASan does not).
SHELL := /bin/bash
JOBS ?= $(shell nproc)
SECONDS ?= 60

.PHONY: all deps build release run test fuzz bench callgrind format format-check clean

all: build

deps:
	@./scripts/install-deps.sh

build: deps
	cmake --preset dev >/dev/null
	cmake --build --preset dev -j $(JOBS)

release: deps
	cmake --preset release >/dev/null
	cmake --build --preset release -j $(JOBS)

run: release
	./scripts/run-dev.sh

test: deps
	cmake --preset asan >/dev/null
	cmake --build --preset asan -j $(JOBS)
	ctest --preset asan -j $(JOBS)
	cmake --preset release >/dev/null
	cmake --build --preset release -j $(JOBS)
	ctest --test-dir build/release -L unit -j $(JOBS) --output-on-failure

fuzz: deps
	cmake --preset fuzz >/dev/null
	cmake --build --preset fuzz -j $(JOBS)
	./scripts/run-fuzz.sh build/fuzz $(SECONDS)

bench: deps
	./scripts/bench.sh

callgrind: deps
	./scripts/callgrind.sh

format:
	git ls-files '*.c' '*.h' | xargs clang-format -i

format-check:
	git ls-files '*.c' '*.h' | xargs clang-format --dry-run -Werror

clean:
	rm -rf build
