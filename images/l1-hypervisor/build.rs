//! Link arguments for the bare-metal kernel binary only (`--features
//! image`); the library and its host tests link normally.
include!("../../bare-metal/link_args.rs");

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo:rerun-if-changed=linker.ld");
    if std::env::var_os("CARGO_FEATURE_IMAGE").is_some() {
        println!("cargo:rustc-link-arg-bins=-T{dir}/linker.ld");
        for arg in LINK_ARGS {
            println!("cargo:rustc-link-arg-bins={arg}");
        }
    }
}
