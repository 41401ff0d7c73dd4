# Matryoshka: `make run` and `make test` are all a fresh machine needs.

SCENARIO ?= default
# Extra arguments for run-scenario, e.g. RUN_ARGS='--emulator qemu' or
# RUN_ARGS="--cpu core2_penryn_t9600 --shim-args 'log=debug'".
RUN_ARGS ?=

CARGO ?= cargo
# After the subcommand: cargo does not forward a global --config to external
# subcommands such as clippy.
BARE_METAL_CONFIG = --config .cargo/bare-metal.toml
SHIM_ELF = target/bare/x86_64-unknown-linux-gnu/release/l0-shim
MONITOR_ELF = target/bare/x86_64-unknown-linux-gnu/release/monitor-image

.PHONY: all deps build image run test test-host lint fmt clean

all: build

deps:
	@tools/install-deps

build: image
	$(CARGO) build --workspace

# The shim kernel and the monitor image (bare metal): see
# .cargo/bare-metal.toml for why they build apart from the host crates.
image:
	$(CARGO) build $(BARE_METAL_CONFIG) --release -p l0-shim -p monitor-image --features l0-shim/kernel,monitor-image/image
	@echo "shim kernel: $(SHIM_ELF)"
	@echo "monitor image: $(MONITOR_ELF)"

# The Linux guest kernel and busybox initramfs (images/linux/README.md), built
# from Debian packages and cached in $MATRYOSHKA_CACHE (default ~/.cache/matryoshka).
.PHONY: linux-images
linux-images:
	images/linux/build-kernel.sh
	images/linux/build-initramfs.sh

# The L1 test kernel and the L1 test hypervisor (bare metal, multiboot v1),
# written where the image builder looks for guest kernels. QEMU's multiboot
# loader refuses ELF64, so the ELF64s that cargo links (at 1 MiB) are
# converted to ELF32.
.PHONY: guests
guests:
	$(CARGO) build $(BARE_METAL_CONFIG) --release -p l1-test-kernel -p l1-hypervisor --features l1-test-kernel/image,l1-hypervisor/image
	@mkdir -p build/guests
	objcopy -O elf32-i386 --strip-debug target/bare/x86_64-unknown-linux-gnu/release/l1-test-kernel build/guests/l1-test
	objcopy -O elf32-i386 --strip-debug target/bare/x86_64-unknown-linux-gnu/release/l1-hypervisor build/guests/l1-hypervisor
	@echo "L1 test kernel: build/guests/l1-test"
	@echo "L1 test hypervisor: build/guests/l1-hypervisor"

# matryoshka-vmm (images/vmm), linked static for the guest initramfs, which
# has no C library (.cargo/vmm-static.toml); checked to have no ELF interpreter.
VMM_STATIC_CONFIG = --config .cargo/vmm-static.toml
VMM_BINARY = target/vmm/x86_64-unknown-linux-gnu/release/matryoshka-vmm
.PHONY: vmm vmm-initramfs
vmm:
	$(CARGO) build $(VMM_STATIC_CONFIG) --release -p matryoshka-vmm
	@if readelf -l $(VMM_BINARY) | grep -q INTERP; then echo "$(VMM_BINARY) is not static" >&2; exit 1; fi
	@echo "matryoshka-vmm (static): $(VMM_BINARY)"

# The Linux guest initramfs with the VMM, vmm-run, and in /guests the L1
# test kernels and the Linux kernel and initramfs themselves (for a nested
# Linux; images/vmm/README.md); prints the archive's path.
vmm-initramfs: vmm guests
	@kernel=$$(images/linux/build-kernel.sh | tail -n1) && base=$$(images/linux/build-initramfs.sh | tail -n1) && \
	images/linux/extend-initramfs.sh --base $$base $(VMM_BINARY):bin/matryoshka-vmm images/vmm/vmm-run.sh:bin/vmm-run \
		build/guests/l1-test:guests/l1-test build/guests/l1-hypervisor:guests/l1-hypervisor \
		$$kernel:guests/linux-bzimage $$base:guests/linux-initramfs

run: deps build guests
	$(CARGO) run --quiet -p matryoshka-tests --bin run-scenario -- --scenario $(SCENARIO) $(RUN_ARGS)

# Host unit tests of every crate, then the emulator tests (Bochs and QEMU).
test: deps image
	$(CARGO) test --workspace -- --show-output

# Only what runs on the host, in seconds.
test-host:
	$(CARGO) test --workspace --lib --bins

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy $(BARE_METAL_CONFIG) --release -p l0-shim --features kernel -- -D warnings
	$(CARGO) clippy $(BARE_METAL_CONFIG) --release -p monitor-image --features image -- -D warnings
	$(CARGO) clippy $(BARE_METAL_CONFIG) --release -p l1-test-kernel -p l1-hypervisor --features l1-test-kernel/image,l1-hypervisor/image -- -D warnings

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
	rm -rf build
