//! The `jetgen` binary; all logic lives in `jetgen::cli`.
fn main() {
    std::process::exit(jetgen::cli::main());
}
