//! `kernel-tt`: the kernel binary of the tt backend. Placeholder until issue 4.

fn main() {
    eprintln!("{}", hal_uml_tt::NOT_IMPLEMENTED);
    std::process::exit(hal_uml_tt::EXIT_NOT_IMPLEMENTED);
}
