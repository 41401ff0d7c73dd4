//! Link arguments for the bare-metal kernel binary only (`--features
//! image`); the library and its host tests link normally.
fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo:rerun-if-changed=linker.ld");
    if std::env::var_os("CARGO_FEATURE_IMAGE").is_some() {
        for arg in [
            format!("-T{dir}/linker.ld"),
            "-nostartfiles".into(),
            "-nostdlib".into(),
            "-static".into(),
            "-no-pie".into(),
            "-Wl,--build-id=none".into(),
            // No page alignment of sections in the file: the image stays
            // small and the multiboot header lands in its first 8 KiB.
            "-Wl,-n".into(),
            "-Wl,--gc-sections".into(),
        ] {
            println!("cargo:rustc-link-arg-bins={arg}");
        }
    }
}
