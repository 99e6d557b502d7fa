# The two set-up commands of the README: `make demo` and `make test` each install what they need first.
PYTHON ?= python3

.PHONY: install demo test bench

install:
	PYTHON=$(PYTHON) bash scripts/install.sh

# int8 needs CIFAR-10 training images, which binexport may not ship: where the project's real partial data set
# lies beside the checkout (../shared/realdata), the demo calibrates on its training batch; DEMO_ARGS adds more
# (e.g. DEMO_ARGS="--data-root ~/data").
DEMO_DATA := $(wildcard ../shared/realdata/cifar10-partial/cifar-10-batches-py/data_batch_4)
DEMO_ARGS ?=

demo: install
	$(PYTHON) -m binexport.cli demo $(if $(DEMO_DATA),--data-root ../shared/realdata/cifar10-partial,) $(DEMO_ARGS)

test: install
	$(PYTHON) -m pytest -q

bench: install
	$(PYTHON) benchmarks/bench_pack.py --write-docs
