// The build-script half of every bare-metal binary here (the shim, the
// monitor image, the L1 test kernel and hypervisor): each build.rs
// `include!`s this file and calls `link_bare_metal_binaries`. A
// build-dependency on the crate would turn on its `runtime` feature for the
// host as well, hence the include.

include!("link_args.rs");

/// When `feature` (e.g. "IMAGE" for `--features image`) is on, links the
/// package's binaries with its `linker.ld` and [`LINK_ARGS`]; the library
/// and its host tests link normally either way.
pub fn link_bare_metal_binaries(feature: &str) {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo:rerun-if-changed=linker.ld");
    if std::env::var_os(format!("CARGO_FEATURE_{feature}")).is_some() {
        println!("cargo:rustc-link-arg-bins=-T{dir}/linker.ld");
        for arg in LINK_ARGS {
            println!("cargo:rustc-link-arg-bins={arg}");
        }
    }
}
