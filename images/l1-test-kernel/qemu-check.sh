#!/usr/bin/env bash
# Builds the L1 test kernel (make guests) and boots it under QEMU TCG with
# each kind of command line, checking its lines and exit status.
#
#   images/l1-test-kernel/qemu-check.sh [-v]     (-v: show every run's output)
#
# QEMU's isa-debug-exit makes QEMU exit with (code << 1) | 1, so the
# kernel's exit codes 0 (passed), 1 (failed), 2 (crashed: unexpected
# exception, panic, cannot boot) and 3 (a crash= request was survived)
# arrive as 1, 3, 5 and 7. A triple fault with -no-reboot ends QEMU with 0.
#
# QEMU's TCG is not Matryoshka's platform: its CPUID says AuthenticAMD with
# max basic leaf 0xd, it reads unknown MSRs as 0 instead of raising #GP,
# and it reads IA32_TIME_STAMP_COUNTER as 0. The runs that should pass say
# so on the command line (expect-unknown-msr=zero expect-tsc-msr=0); one
# run keeps the hardware expectations to show the failures they give.
set -u
cd "$(dirname "$0")/../.."

verbose=0
[ "${1:-}" = "-v" ] && verbose=1

output=$(mktemp)
trap 'rm -f "$output"' EXIT
if ! make -s guests >"$output" 2>&1; then
    cat "$output" >&2
    echo "qemu-check: make guests failed" >&2
    exit 1
fi
kernel=build/guests/l1-test

QEMU_QUIRKS="expect-unknown-msr=zero expect-tsc-msr=0"
passed=0
failed=0

# check NAME EXPECTED_STATUS 'COMMAND LINE' PATTERN...
# Each PATTERN is an extended regular expression that must match a whole
# output line, or, with a leading '!', must match none.
check() {
    local name=$1 want_status=$2 append=$3
    shift 3
    local status=0
    timeout 120 qemu-system-x86_64 -kernel "$kernel" -append "$append" \
        -serial stdio -display none -monitor none -no-reboot -m 128 \
        -device isa-debug-exit,iobase=0xf4,iosize=0x04 >"$output" 2>&1 || status=$?
    local problems=()
    [ "$status" = "$want_status" ] || problems+=("exit status $status, expected $want_status")
    local pattern
    for pattern in "$@"; do
        if [ "${pattern:0:1}" = "!" ]; then
            grep -qxE -- "${pattern:1}" "$output" && problems+=("unexpected line matching: ${pattern:1}")
        else
            grep -qxE -- "$pattern" "$output" || problems+=("missing line matching: $pattern")
        fi
    done
    if [ ${#problems[@]} -eq 0 ]; then
        passed=$((passed + 1))
        echo "ok   $name (status $status)"
        [ $verbose = 1 ] && sed 's/^/     | /' "$output"
    else
        failed=$((failed + 1))
        echo "FAIL $name (command line: $append)"
        printf '     - %s\n' "${problems[@]}"
        sed 's/^/     | /' "$output"
    fi
    return 0
}

ANY_FAIL='l1-test: .*: FAIL.*'

check "checks, QEMU's expectations" 1 \
    "tests=cpuid,msr,io,pit,rtc,memory expect-hypervisor=1 expect-vmx=0 $QEMU_QUIRKS" \
    'l1-test: booted by a multiboot loader .*' \
    'l1-test: cpuid: PASS' 'l1-test: msr: PASS' 'l1-test: io: PASS' \
    'l1-test: pit: PASS' 'l1-test: rtc: PASS' 'l1-test: memory: PASS' \
    'l1-test: pit: TSC against .*: [0-9]+ kHz .*' \
    'l1-test: memory: [0-9]+ MiB available; tested [0-9]+ MiB above the kernel .*' \
    'l1-test: done: 6 passed, 0 failed' "!$ANY_FAIL"

check "checks, hardware MSR expectations (QEMU falls short)" 3 \
    "tests=cpuid,msr,io,pit,rtc,memory expect-hypervisor=1 expect-vmx=0" \
    'l1-test: msr: FAIL RDMSR of unknown MSR 0x12345678: expected #GP\(0\), saw no fault \(value 0x0\)' \
    'l1-test: msr: FAIL TSC MSR: expected at least .*' \
    'l1-test: cpuid: PASS' 'l1-test: memory: PASS' \
    'l1-test: done: 5 passed, 1 failed'

check "exceptions, all checks, work" 1 \
    "tests=all work=3 expect-hypervisor=1 expect-vmx=0 rtc-wait=0 $QEMU_QUIRKS" \
    'l1-test: exceptions: read of an unmapped address: #PF \(vector 14, error code 0x0, CR2 0x200000000\), resumed' \
    'l1-test: exceptions: PASS' \
    'l1-test: work 1/3 .*' 'l1-test: work 3/3 .*' \
    'l1-test: done: 7 passed, 0 failed' "!$ANY_FAIL"

check "wrong expectations fail" 3 \
    "tests=cpuid,pit expect-hypervisor=0 expect-vmx=1 expect-tsc-khz=1000 expect-vendor=GenuineIntel" \
    'l1-test: cpuid: FAIL vendor: expected GenuineIntel, saw AuthenticAMD' \
    'l1-test: cpuid: FAIL hypervisor bit: expected 0, saw 1' \
    'l1-test: cpuid: FAIL VMX bit: expected 1, saw 0' \
    'l1-test: cpuid: FAIL TSC frequency: expected CPUID to describe 1000 kHz, but max basic leaf is below 0x15' \
    'l1-test: pit: FAIL TSC: expected 1000 kHz within 50%, measured [0-9]+ kHz .*' \
    'l1-test: done: 0 passed, 2 failed'

check "command-line mistakes fail" 3 \
    "test=cpuid tests=cpuid,bogus expect-vmx=yes" \
    "l1-test: cmdline: FAIL unknown option 'test'" \
    "l1-test: cmdline: FAIL unknown test 'bogus' in tests=" \
    'l1-test: cmdline: FAIL expect-vmx=yes: expected 0 or 1' \
    'l1-test: cpuid: PASS' \
    'l1-test: done: 1 passed, 3 failed'

check "hostile=devices, then the devices still work" 1 \
    "hostile=devices tests=io,pit,rtc" \
    'l1-test: hostile-devices: survived [0-9]+ hostile port accesses; devices reprogrammed' \
    'l1-test: hostile-devices: PASS' 'l1-test: io: PASS' 'l1-test: pit: PASS' 'l1-test: rtc: PASS' \
    'l1-test: done: 4 passed, 0 failed'

check "hostile=msrs, QEMU's expectations" 1 \
    "hostile=msrs $QEMU_QUIRKS" \
    'l1-test: hostile-msrs: 25 RDMSRs and 75 WRMSRs of unknown MSRs' \
    'l1-test: hostile-msrs: PASS' \
    'l1-test: done: 1 passed, 0 failed'

check "hostile=msrs, hardware expectations (QEMU falls short)" 3 \
    "hostile=msrs" \
    'l1-test: hostile-msrs: FAIL RDMSR 0x20000000: expected #GP\(0\), saw no fault \(value 0x0\)' \
    'l1-test: hostile-msrs: FAIL 100 of 100 accesses did not do what was expected' \
    'l1-test: done: 0 passed, 1 failed'

check "crash=triple-fault (QEMU shuts down)" 0 \
    "crash=triple-fault" \
    'l1-test: crash: triple-fault: loading an empty IDT, then UD2' \
    '!l1-test: done: .*'

check "crash=wild-mmio (QEMU ignores the write)" 7 \
    "crash=wild-mmio" \
    'l1-test: crash: wild-mmio: writing 0xbadf00d to physical 0xdead0000, beyond RAM' \
    'l1-test: crash: wild-mmio: survived: read back 0x[0-9a-f]+' \
    'l1-test: crash: wild-mmio: the platform did not stop the guest'

check "crash=unknown-msr (QEMU reads 0)" 7 \
    "crash=unknown-msr" \
    'l1-test: crash: unknown-msr: RDMSR 0x12345678 with no fault expected' \
    'l1-test: crash: unknown-msr: survived: read 0x0'

check "crash=invalid-opcode: the unexpected-exception report" 5 \
    "crash=invalid-opcode" \
    'l1-test: FATAL: unexpected exception #UD \(vector 6\) error code 0x0 at RIP 0x[0-9a-f]+' \
    'l1-test: FATAL: RSP 0x[0-9a-f]+ RFLAGS 0x[0-9a-f]+ CS 0x8' \
    '!l1-test: done: .*'

echo "qemu-check: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
