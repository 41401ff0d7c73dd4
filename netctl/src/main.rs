fn main() {
    let code = netctl::run(std::env::args().collect(), &mut std::io::stdout().lock(), &mut std::io::stderr().lock());
    std::process::exit(code);
}
