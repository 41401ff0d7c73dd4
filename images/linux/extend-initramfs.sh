#!/usr/bin/env bash
# Builds a variant of the guest initramfs with extra files in it, e.g. a
# static VMM and the guest kernels it runs (images/vmm/README.md).
#
# The Linux initramfs unpacker accepts several compressed cpio archives one
# after the other, later files overriding earlier ones: the variant is the
# default archive of build-initramfs.sh, byte for byte, followed by a small
# archive of the extra files. The default archive, its script and its cache
# key stay as they are.
#
# The result is cached outside the repository under a key derived from this
# script, the default archive and every extra file's destination, mode and
# content. The archive's path is the last line of stdout; progress goes to
# stderr.
#
# usage: extend-initramfs.sh [--force] [--base ARCHIVE] SOURCE:DESTINATION...
#   DESTINATION is a path inside the initramfs without a leading slash
#   (e.g. bin/matryoshka-vmm); executable sources stay executable.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
self="$here/$(basename "${BASH_SOURCE[0]}")"
cache=${MATRYOSHKA_CACHE:-$HOME/.cache/matryoshka}

log() { echo "extend-initramfs: $*" >&2; }
die() { log "error: $*"; exit 1; }
usage="usage: extend-initramfs.sh [--force] [--base ARCHIVE] SOURCE:DESTINATION..."

force=0
base=
files=()
while [ $# -gt 0 ]; do
    case "$1" in
        --force) force=1 ;;
        --base) [ $# -ge 2 ] || die "$usage"; base=$2; shift ;;
        -*) die "unknown option '$1'; $usage" ;;
        *:*) files+=("$1") ;;
        *) die "'$1' is not SOURCE:DESTINATION; $usage" ;;
    esac
    shift
done
[ ${#files[@]} -gt 0 ] || die "no files to add; $usage"
command -v cpio >/dev/null 2>&1 || die "cpio is missing (apt-get install cpio)"

if [ -z "$base" ]; then
    base=$("$here/build-initramfs.sh" | tail -n1)
fi
[ -f "$base" ] || die "base archive '$base' does not exist"

for entry in "${files[@]}"; do
    source=${entry%%:*}
    destination=${entry#*:}
    [ -f "$source" ] || die "'$source' (for $destination) is not a file"
    case "$destination" in
        /*|*..*|"") die "destination '$destination' must be a relative path inside the initramfs" ;;
    esac
done

key=$({
    echo "script $(sha256sum < "$self" | cut -d' ' -f1)"
    echo "base $(sha256sum < "$base" | cut -d' ' -f1)"
    for entry in "${files[@]}"; do
        source=${entry%%:*}
        mode=644
        [ -x "$source" ] && mode=755
        echo "file ${entry#*:} $mode $(sha256sum < "$source" | cut -d' ' -f1)"
    done
} | sha256sum | cut -c1-16)
out="$cache/initramfs-extended-$key"
archive="$out/initramfs.cpio.gz"

if [ $force -eq 0 ] && [ -f "$archive" ]; then
    log "cached"
    echo "$archive"
    exit 0
fi

mkdir -p "$cache"
rm -rf "$out.tmp.$$"
mkdir -p "$out.tmp.$$/root"
trap 'rm -rf "$out.tmp.$$"' EXIT
root="$out.tmp.$$/root"
for entry in "${files[@]}"; do
    source=${entry%%:*}
    destination=${entry#*:}
    mkdir -p "$root/$(dirname "$destination")"
    cp "$source" "$root/$destination"
    if [ -x "$source" ]; then chmod 755 "$root/$destination"; else chmod 644 "$root/$destination"; fi
done
# The same inputs give the same bytes: sorted names, owner root, time 0.
find "$root" -mindepth 1 -type d -exec chmod 755 {} +
find "$root" -mindepth 1 -exec touch -h -d @0 {} +
(cd "$root" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0 --reproducible) \
    | gzip -9n > "$out.tmp.$$/extra.cpio.gz"
cat "$base" "$out.tmp.$$/extra.cpio.gz" > "$out.tmp.$$/initramfs.cpio.gz"
rm -rf "$root" "$out.tmp.$$/extra.cpio.gz"
{
    echo "key $key"
    echo "base $base"
    for entry in "${files[@]}"; do echo "file $entry"; done
} > "$out.tmp.$$/build-info"
# Publish atomically: a directory holding the archive is always complete.
trap - EXIT
rm -rf "$out"
mv -T "$out.tmp.$$" "$out"
log "initramfs: $(stat -c %s "$archive") bytes ($(stat -c %s "$base") of them the default archive)"
echo "$archive"
