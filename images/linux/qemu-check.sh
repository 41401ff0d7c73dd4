#!/usr/bin/env bash
# Boots the Matryoshka guest kernel and initramfs under QEMU (TCG, 2 vCPUs)
# and checks that /init starts, runs a command given as matryoshka.run="...",
# prints its output between the begin/end lines, and powers the machine off.
# The console is printed with the wall time (seconds since QEMU started) in
# front of each line. Exits 0 when everything expected was seen, 1 otherwise.
#
# usage: qemu-check.sh [--kernel BZIMAGE] [--initramfs CPIO_GZ] [--net]
#                      [--run CMD --expect TEXT]... [--timeout SECONDS]
#   --net builds the kernel with kernel-net.config and gives QEMU an e1000 NIC.
#   Without --kernel/--initramfs, build-kernel.sh and build-initramfs.sh
#   provide them (instant when cached). The default command prints the kernel
#   release and the number of CPUs, and expects "-matryoshka" and "2".
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
kernel=
initramfs=
kernel_args=()
qemu_args=()
run='uname -r; grep -c ^processor /proc/cpuinfo'
expects=()
timeout=120

usage() { sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
while [ $# -gt 0 ]; do
    case "$1" in
        --kernel) kernel=$2; shift ;;
        --initramfs) initramfs=$2; shift ;;
        --net) kernel_args+=(--net); qemu_args+=(-nic user,model=e1000) ;;
        --run) run=$2; shift ;;
        --expect) expects+=("$2"); shift ;;
        --timeout) timeout=$2; shift ;;
        *) usage ;;
    esac
    shift
done
[ ${#expects[@]} -gt 0 ] || expects=("-matryoshka" "2")
case "$run" in *'"'*) echo "qemu-check: the command cannot contain a double quote" >&2; exit 2 ;; esac

[ -n "$kernel" ] || kernel=$("$here/build-kernel.sh" "${kernel_args[@]}" | tail -n1)
[ -n "$initramfs" ] || initramfs=$("$here/build-initramfs.sh" | tail -n1)
command -v qemu-system-x86_64 >/dev/null || { echo "qemu-check: qemu-system-x86_64 missing (package qemu-system-x86)" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
console=$work/console

# The wall time of each console line, relative to QEMU's start. A guest that
# halts or panics instead of powering off never ends QEMU: stop it then.
start=$EPOCHREALTIME
stamp() {
    local line now
    while IFS= read -r line; do
        line=${line%$'\r'}
        now=$EPOCHREALTIME
        printf '%8.3f %s\n' "$(bc <<< "$now - $start")" "$line"
        case "$line" in
            *"reboot: System halted"*|*"Kernel panic"*)
                sleep 1
                echo "$line" > "$work/stopped"
                [ -f "$work/qemu.pid" ] && kill "$(cat "$work/qemu.pid")" 2>/dev/null ;;
        esac
    done
}
set +e
timeout --foreground "$timeout" qemu-system-x86_64 -accel tcg -m 256 -smp 2 \
    -kernel "$kernel" -initrd "$initramfs" \
    -append "console=ttyS0 quiet panic=-1 matryoshka.run=\"$run\"" \
    -serial stdio -display none -monitor none -nodefaults -no-reboot \
    -pidfile "$work/qemu.pid" "${qemu_args[@]}" < /dev/null \
    | stamp | tee "$console"
qemu_status=${PIPESTATUS[0]}
set -e

# The console lines only, without their time stamps.
lines=$(cut -c10- "$console")
output=$(sed -n '/^matryoshka-guest: run begin$/,/^matryoshka-guest: run end/p' <<< "$lines" | sed '1d;$d')
missing=()
for want in "matryoshka-guest: init started" "matryoshka-guest: run begin" \
        "matryoshka-guest: run end (status 0)"; do
    grep -qxF "$want" <<< "$lines" || missing+=("line \"$want\"")
done
# The kernel's last words, after its printk time stamp.
grep -qE '^(\[ *[0-9]+\.[0-9]+\] )?reboot: Power down$' <<< "$lines" \
    || missing+=("line \"reboot: Power down\" (the kernel powering off)")
for want in "${expects[@]}"; do
    grep -qF -- "$want" <<< "$output" || missing+=("\"$want\" in the command's output")
done
if [ -f "$work/stopped" ]; then
    missing+=("a power-off (stopped QEMU after: $(cat "$work/stopped"))")
elif [ "$qemu_status" -eq 124 ]; then
    missing+=("the end of QEMU: timed out after ${timeout}s")
elif [ "$qemu_status" -ne 0 ]; then
    missing+=("QEMU ending by itself (it was stopped, or failed: status $qemu_status)")
fi

echo "qemu-check: kernel $kernel ($(stat -c %s "$kernel") bytes)"
echo "qemu-check: initramfs $initramfs ($(stat -c %s "$initramfs") bytes)"
if [ ${#missing[@]} -gt 0 ]; then
    printf 'qemu-check: FAILED: missing %s\n' "${missing[@]}"
    exit 1
fi
init_at=$(grep -m1 ' matryoshka-guest: init started$' "$console" | cut -c1-8 | tr -d ' ')
off_at=$(grep -m1 ' reboot: Power down$' "$console" | cut -c1-8 | tr -d ' ')
echo "qemu-check: ok: /init after ${init_at}s, powered off after ${off_at}s (wall time under QEMU TCG)"
