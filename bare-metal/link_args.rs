/// Link arguments for a bare-metal binary, after its own `-T` linker
/// script: no C start files or libraries, a static non-PIE executable
/// without a build id, sections not page-aligned in the file (small images,
/// and a multiboot header in the first 8 KiB), unused sections dropped.
///
/// Build scripts get it through `build_script.rs`.
pub const LINK_ARGS: [&str; 7] =
    ["-nostartfiles", "-nostdlib", "-static", "-no-pie", "-Wl,--build-id=none", "-Wl,-n", "-Wl,--gc-sections"];
