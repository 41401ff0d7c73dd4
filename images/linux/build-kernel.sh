#!/usr/bin/env bash
# Builds the Matryoshka guest kernel (a small Linux 6.1 bzImage) from Debian's
# linux-source-6.1 package: `make tinyconfig`, then the fragment kernel.config
# (plus kernel-net.config with --net, plus any fragment given as an argument),
# then `make olddefconfig` and `make bzImage`.
#
# The result is cached outside the repository, under a key derived from the
# fragments, the source package version, the compiler and this script, so a
# second run with the same inputs only prints the path. The path of the
# bzImage is the last line of stdout; progress goes to stderr.
#
# usage: build-kernel.sh [--net] [--force] [--config-only] [FRAGMENT...]
#   --net          also apply kernel-net.config (PCI, e1000, TCP/IP)
#   --force        rebuild even if the cache holds this kernel
#   --config-only  make and check the .config, print its path, build nothing
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
self="$here/$(basename "${BASH_SOURCE[0]}")"
cache=${MATRYOSHKA_CACHE:-$HOME/.cache/matryoshka}
source_package=linux-source-6.1
source_tarball=/usr/src/$source_package.tar.xz
build_packages=(build-essential bc bison flex libelf-dev libssl-dev cpio kmod)

log() { echo "build-kernel: $*" >&2; }
die() { log "error: $*"; exit 1; }

fragments=("$here/kernel.config")
force=0
config_only=0
while [ $# -gt 0 ]; do
    case "$1" in
        --net) fragments+=("$here/kernel-net.config") ;;
        --force) force=1 ;;
        --config-only) config_only=1 ;;
        -h|--help) sed -n '2,/^set -e/p' "$self" | sed '$d; s/^# \{0,1\}//' >&2; exit 0 ;;
        -*) die "unknown option $1 (see --help)" ;;
        *) [ -f "$1" ] || die "no such fragment: $1"
           fragments+=("$(cd "$(dirname "$1")" && pwd)/$(basename "$1")") ;;
    esac
    shift
done

# A make that runs us (the top-level Makefile) must not pass its flags and
# jobserver into the kernel's build.
unset MAKEFLAGS MFLAGS MAKELEVEL MAKEOVERRIDES

is_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

ensure_packages() {
    local missing=() package sudo=()
    for package in "$@"; do
        is_installed "$package" || missing+=("$package")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    log "installing ${missing[*]}"
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || die "need root (or sudo) to install: ${missing[*]}"
        sudo=(sudo)
    fi
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get -o DPkg::Lock::Timeout=600 update -qq
    "${sudo[@]}" apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends \
        "${missing[@]}" >&2
}

# The cache key: everything that decides what the bzImage contains.
cache_key() {
    {
        echo "script $(sha256sum < "$self" | cut -d' ' -f1)"
        echo "source $source_package $(dpkg-query -W -f='${Version}' "$source_package")"
        echo "compiler $(gcc --version | head -n1)"
        local fragment
        for fragment in "${fragments[@]}"; do
            echo "fragment $(sha256sum < "$fragment" | cut -d' ' -f1)"
        done
    } | sha256sum | cut -c1-16
}

# Fast path: nothing to install, kernel already built.
if [ $force -eq 0 ] && [ $config_only -eq 0 ] && is_installed "$source_package" \
        && command -v gcc >/dev/null 2>&1; then
    out="$cache/linux-$(cache_key)"
    if [ -f "$out/bzImage" ]; then
        log "cached"
        echo "$out/bzImage"
        exit 0
    fi
fi

ensure_packages "$source_package" "${build_packages[@]}"
[ -f "$source_tarball" ] || die "$source_tarball missing although $source_package is installed"
version=$(dpkg-query -W -f='${Version}' "$source_package")
key=$(cache_key)
out="$cache/linux-$key"
src="$cache/src/$source_package-$version"   # pristine unpacked tree, read-only use
obj="$cache/linux-build/$version"           # kbuild output dir (O=), reused: incremental
mkdir -p "$cache/src" "$cache/linux-build"

# One build at a time per source version: the object directory is shared.
exec 9>"$cache/linux-build/$version.lock"
if ! flock -n 9; then
    log "waiting for another kernel build to finish"
    flock 9
fi
if [ $force -eq 0 ] && [ $config_only -eq 0 ] && [ -f "$out/bzImage" ]; then
    log "cached (built meanwhile by another run)"
    echo "$out/bzImage"
    exit 0
fi

if [ ! -f "$src/.matryoshka-unpacked" ]; then
    log "unpacking $source_tarball ($version) into $src"
    rm -rf "$src" "$src.tmp"
    mkdir -p "$src.tmp"
    tar -xJf "$source_tarball" -C "$src.tmp" --strip-components=1
    touch "$src.tmp/.matryoshka-unpacked"
    mv -T "$src.tmp" "$src"
fi

mkdir -p "$obj"
build_log="$obj/build.log"
: > "$build_log"
kmake() {
    if ! make -C "$src" O="$obj" KBUILD_BUILD_USER=matryoshka KBUILD_BUILD_HOST=matryoshka \
            "$@" >> "$build_log" 2>&1; then
        tail -n 40 "$build_log" >&2
        die "make $* failed; full log: $build_log"
    fi
}

log "configuring: tinyconfig + ${fragments[*]##*/}"
kmake tinyconfig
if ! "$src/scripts/kconfig/merge_config.sh" -m -O "$obj" "$obj/.config" "${fragments[@]}" \
        >> "$build_log" 2>&1; then
    tail -n 20 "$build_log" >&2
    die "merge_config.sh failed; full log: $build_log"
fi
kmake olddefconfig

# Every option of the fragments must have ended up as asked (a later fragment
# overrides an earlier one). Kconfig silently drops what a dependency forbids.
check_config() {
    local config=$1 fragment line name value order=() bad=0
    declare -A wanted=()
    for fragment in "${fragments[@]}"; do
        while IFS= read -r line; do
            if [[ $line =~ ^(CONFIG_[A-Za-z0-9_]+)=(.*)$ ]]; then
                name=${BASH_REMATCH[1]}; value=${BASH_REMATCH[2]}
            elif [[ $line =~ ^#\ (CONFIG_[A-Za-z0-9_]+)\ is\ not\ set ]]; then
                name=${BASH_REMATCH[1]}; value=n
            else
                continue
            fi
            [ -n "${wanted[$name]+set}" ] || order+=("$name")
            wanted[$name]=$value
        done < "$fragment"
    done
    for name in "${order[@]}"; do
        value=$(grep -m1 "^$name=" "$config" | cut -d= -f2- || true)
        [ -n "$value" ] || value=n
        if [ "$value" != "${wanted[$name]}" ]; then
            echo "  $name: wanted ${wanted[$name]}, got $value" >&2
            bad=1
        fi
    done
    return $bad
}
if ! check_config "$obj/.config"; then
    die "the options above did not end up as the fragments ask (a dependency is off, or a choice/select overrides them); see $obj/.config"
fi
log "config checked: every fragment option is set as asked"

if [ $config_only -eq 1 ]; then
    echo "$obj/.config"
    exit 0
fi

log "building bzImage with $(nproc) jobs (log: $build_log)"
start=$(date +%s)
kmake -j"$(nproc)" bzImage
seconds=$(( $(date +%s) - start ))
log "built in ${seconds}s"

# Publish atomically: a directory holding a bzImage is always complete.
rm -rf "$out" "$out.tmp"
mkdir -p "$out.tmp"
cp "$obj/arch/x86/boot/bzImage" "$out.tmp/bzImage"
cp "$obj/.config" "$out.tmp/config"
cp "$obj/System.map" "$out.tmp/System.map"
{
    echo "key $key"
    echo "source $source_package $version"
    echo "compiler $(gcc --version | head -n1)"
    echo "fragments ${fragments[*]}"
    echo "release $(cat "$obj/include/config/kernel.release")"
    echo "build_seconds $seconds"
} > "$out.tmp/build-info"
mv -T "$out.tmp" "$out"
log "bzImage: $(stat -c %s "$out/bzImage") bytes"
echo "$out/bzImage"
