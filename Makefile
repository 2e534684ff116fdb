# docker-worker: the two commands a new machine needs are `make demo` and `make test`.
CARGO ?= cargo
DW_TEST = target/debug/dw-test
DOCKER_WORKER = target/debug/docker-worker

.PHONY: build images demo test bench clean

build:
	$(CARGO) build --bins

# taskenv_pass:latest and taskenv_fail:latest, from local content (static busybox) only.
images: build
	$(DW_TEST) images

# The original README's example: prints Hello World, writes ./artifacts/passwd.txt and result.json.
demo: images
	$(DOCKER_WORKER) run examples/hello.json --artifacts-dir artifacts

# Unit and integration tests (real Docker), then the end-to-end suites against the fake queue.
test: images
	$(CARGO) test --all-targets
	$(DW_TEST)

# Benchmarks (release build): per-task overhead, throughput, log throughput and memory, cancel latency.
bench:
	$(CARGO) build --release --bins
	target/release/dw-test bench

clean:
	$(CARGO) clean
	rm -rf artifacts
