#!/bin/sh
# /bin/vmm-run in the VMM initramfs (images/linux/extend-initramfs.sh): the
# initramfs's mode for running one guest, from /init's matryoshka.run:
#
#   vmm-run [VMM OPTION]... [-- GUEST COMMAND LINE WORD...]
#   e.g. matryoshka.run="vmm-run --kernel /guests/l1-test --mem 32 -- tests=all"
#
# The words after `--` become the VMM's --cmdline, so the kernel command
# line needs no quotes inside matryoshka.run (it has no escapes, and GRUB
# escapes any quote it passes on). It says what KVM offers, runs
# matryoshka-vmm, and passes on its exit status once the console has sent
# everything.
if [ ! -c /dev/kvm ]; then
    echo "vmm-run: no /dev/kvm (KVM built in? a CPU with VMX?)"
    exit 2
fi
guest=
in_guest=0
# The list is expanded once, so the loop may rebuild "$@" with the VMM's
# own options while it walks the original.
for word in "$@"; do
    shift
    if [ $in_guest -eq 1 ]; then
        guest="${guest:+$guest }$word"
    elif [ "$word" = "--" ]; then
        in_guest=1
    else
        set -- "$@" "$word"
    fi
done
if [ $in_guest -eq 1 ]; then
    set -- "$@" --cmdline "$guest"
fi
nested=$(cat /sys/module/kvm_intel/parameters/nested 2>/dev/null || echo unknown)
shadow=$(cat /sys/module/kvm_intel/parameters/enable_shadow_vmcs 2>/dev/null || echo unknown)
echo "vmm-run: kvm_intel nested=$nested enable_shadow_vmcs=$shadow"
echo "vmm-run: matryoshka-vmm $*"
matryoshka-vmm "$@"
status=$?
echo "vmm-run: matryoshka-vmm exited with status $status"
# Wait until the console has sent all of that: /init powers off right after
# the command, and a serial line at 115200 baud (Bochs paces it) would still
# hold the last lines. Setting the terminal's modes again waits for the
# output to drain first (busybox stty uses TCSADRAIN).
stty -F /dev/console "$(stty -F /dev/console -g)" 2>/dev/null
exit $status
