//! Link arguments for the bare-metal binary (`--features image`) only; the
//! library and its host tests link normally.
include!("../../bare-metal/build_script.rs");

fn main() {
    link_bare_metal_binaries("IMAGE");
}
