#!/usr/bin/env bash
# Builds the Matryoshka guest initramfs: a gzip-compressed cpio ("newc")
# archive holding Debian's static busybox, a symlink for each of its applets,
# and init.sh as /init.
#
# The archive is written by this script itself (no cpio tool, no root, no
# mknod): every entry belongs to root, every time stamp is 0, so the same
# inputs give the same bytes. It is cached outside the repository, under a
# key derived from this script, init.sh and the busybox package (version and
# binary), so a second run only prints the path. The path of the archive is
# the last line of stdout; progress goes to stderr.
#
# usage: build-initramfs.sh [--force]
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
self="$here/$(basename "${BASH_SOURCE[0]}")"
init_script="$here/init.sh"
cache=${MATRYOSHKA_CACHE:-$HOME/.cache/matryoshka}
busybox_package=busybox-static
busybox=/bin/busybox

log() { echo "build-initramfs: $*" >&2; }
die() { log "error: $*"; exit 1; }

force=0
case "${1:-}" in
    "") ;;
    --force) force=1 ;;
    *) die "usage: build-initramfs.sh [--force]" ;;
esac

if ! dpkg-query -W -f='${Status}' "$busybox_package" 2>/dev/null | grep -q "install ok installed"; then
    log "installing $busybox_package"
    sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || die "need root (or sudo) to install $busybox_package"
        sudo=(sudo)
    fi
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get -o DPkg::Lock::Timeout=600 update -qq
    "${sudo[@]}" apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends \
        "$busybox_package" >&2
fi
[ -x "$busybox" ] || die "$busybox missing although $busybox_package is installed"

key=$({
    echo "script $(sha256sum < "$self" | cut -d' ' -f1)"
    echo "init $(sha256sum < "$init_script" | cut -d' ' -f1)"
    echo "busybox $(dpkg-query -W -f='${Version}' "$busybox_package") $(sha256sum < "$busybox" | cut -d' ' -f1)"
} | sha256sum | cut -c1-16)
out="$cache/initramfs-$key"
archive="$out/initramfs.cpio.gz"

if [ $force -eq 0 ] && [ -f "$archive" ]; then
    log "cached"
    echo "$archive"
    exit 0
fi

# --- A cpio "newc" writer ------------------------------------------------------
# Each entry: the magic 070701, thirteen 8-digit hex fields, the NUL-terminated
# name padded to a multiple of 4 bytes (counting the 110-byte header), then the
# data padded to a multiple of 4 bytes.
inode=0
pad4() { # pad4 LENGTH: the NULs that bring LENGTH to a multiple of 4
    local n=$(( (4 - $1 % 4) % 4 ))
    [ $n -eq 0 ] || printf '%*s' $n '' | tr ' ' '\0'
}
header() { # header NAME MODE SIZE NLINK RDEV_MAJOR RDEV_MINOR
    local name=$1 namesize=$(( ${#1} + 1 ))
    inode=$((inode + 1))
    # ino mode uid gid nlink mtime filesize devmajor devminor rdevmajor rdevminor namesize check
    printf '070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x' \
        "$inode" "$2" 0 0 "$4" 0 "$3" 0 0 "$5" "$6" "$namesize" 0
    printf '%s\0' "$name"
    pad4 $((110 + namesize))
}
dir() { header "$1" $((8#040000 | ${2:-8#755})) 0 2 0 0; }
chardev() { header "$1" $((8#020000 | $2)) 0 1 "$3" "$4"; }
file() { # file NAME MODE SOURCE
    local size
    size=$(stat -L -c %s "$3")
    header "$1" $((8#100000 | $2)) "$size" 1 0 0
    cat "$3"
    pad4 "$size"
}
text() { # text NAME MODE CONTENT
    header "$1" $((8#100000 | $2)) ${#3} 1 0 0
    printf '%s' "$3"
    pad4 ${#3}
}
symlink() { # symlink NAME TARGET
    header "$1" $((8#120777)) ${#2} 1 0 0
    printf '%s' "$2"
    pad4 ${#2}
}
trailer() { header 'TRAILER!!!' 0 0 1 0 0; }

# The contents. /dev/console must exist before /init runs: the kernel opens
# it as init's stdin/stdout/stderr (devtmpfs is mounted only later, by /init).
archive_contents() {
    local d applet
    for d in bin sbin usr usr/bin usr/sbin dev etc proc sys root run; do
        dir "$d"
    done
    dir tmp 8#1777
    chardev dev/console 8#600 5 1
    file bin/busybox 8#755 "$busybox"
    file init 8#755 "$init_script"
    text etc/passwd 8#644 $'root:x:0:0:root:/root:/bin/sh\n'
    text etc/group 8#644 $'root:x:0:\n'
    # One symlink per applet, where busybox would install it (bin/sh, sbin/poweroff...).
    while IFS= read -r applet; do
        [ "$applet" = bin/busybox ] || [ -z "$applet" ] || symlink "$applet" /bin/busybox
    done < <("$busybox" --list-full | sort)
    trailer
}

log "building initramfs ($("$busybox" | head -n1 | cut -d' ' -f1-2))"
mkdir -p "$cache"
rm -rf "$out.tmp.$$"
mkdir -p "$out.tmp.$$"
archive_contents | gzip -9n > "$out.tmp.$$/initramfs.cpio.gz"
{
    echo "key $key"
    echo "busybox $(dpkg-query -W -f='${Version}' "$busybox_package")"
    echo "init $init_script"
} > "$out.tmp.$$/build-info"
# Publish atomically: a directory holding the archive is always complete.
rm -rf "$out"
mv -T "$out.tmp.$$" "$out"
log "initramfs: $(stat -c %s "$archive") bytes"
echo "$archive"
