#!/bin/sh
# /init of the Matryoshka guest initramfs (busybox ash).
#
# Mounts the kernel file systems, announces itself, runs the command given on
# the kernel command line as matryoshka.run="..." and powers the machine off.
# Test harnesses wait for these console lines:
#   matryoshka-guest: init started
#   matryoshka-guest: listening to the power button   (with ACPI; pressing
#       it powers off: "matryoshka-guest: power button pressed: powering off")
#   matryoshka-guest: run begin
#   ...the command's output...
#   matryoshka-guest: run end (status N)
# Without matryoshka.run, an interactive shell runs on the console instead and
# the machine powers off when it exits.

export PATH=/bin:/sbin:/usr/bin:/usr/sbin
export HOME=/root

mount -t devtmpfs devtmpfs /dev
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t tmpfs -o mode=1777 tmpfs /tmp

echo "matryoshka-guest: init started"

# The ACPI power button (the host's `netctl shutdown`, like `virsh shutdown`
# or `xl shutdown -F`): what acpid or systemd-logind do on a distribution.
# Its input device reports KEY_POWER; any event from it powers off.
for event in /sys/class/input/event*; do
    [ "$(cat "$event/device/name" 2>/dev/null)" = "Power Button" ] || continue
    (
        dd if="/dev/input/${event##*/}" bs=64 count=1 of=/dev/null 2>/dev/null &&
            echo "matryoshka-guest: power button pressed: powering off" &&
            poweroff -f
    ) &
    echo "matryoshka-guest: listening to the power button"
done

# The kernel keeps parameters with a dot in their name for itself, so the
# command is read from /proc/cmdline. Accepted spellings (the value cannot
# contain a double quote, the kernel command line has no escapes):
#   matryoshka.run="cmd args"   (QEMU -append, a VMM's own command line)
#   "matryoshka.run=cmd args"   (GRUB: "matryoshka.run=cmd args" in grub.cfg)
#   "matryoshka.run=\"cmd args\""  (GRUB: 'matryoshka.run="cmd args"' in grub.cfg)
#   matryoshka.run=cmd          (no spaces)
cmdline=" $(cat /proc/cmdline) "
run=
case "$cmdline" in
    *' "matryoshka.run=\"'*)
        rest=${cmdline#*' "matryoshka.run=\"'}
        run=${rest%%\\\"*} ;;
    *' "matryoshka.run='*)
        rest=${cmdline#*' "matryoshka.run='}
        run=${rest%%\"*} ;;
    *' matryoshka.run="'*)
        rest=${cmdline#*' matryoshka.run="'}
        run=${rest%%\"*} ;;
    *' matryoshka.run='*)
        rest=${cmdline#*' matryoshka.run='}
        run=${rest%% *} ;;
esac

if [ -n "$run" ]; then
    echo "matryoshka-guest: run begin"
    sh -c "$run"
    status=$?
    echo "matryoshka-guest: run end (status $status)"
else
    echo "matryoshka-guest: no matryoshka.run=\"...\" on the kernel command line: starting a shell"
    setsid cttyhack sh
fi

# With ACPI tables this turns the machine off; without, the kernel halts all
# CPUs ("reboot: System halted").
poweroff -f
echo "matryoshka-guest: poweroff failed"
reboot -f
