//! The `jetgen` binary; all logic lives in `jetgen::cli`.
fn main() {
    // the CLI owns its process: keep freed tensor memory (see `jetgen::malloc_tuning`)
    jetgen::malloc_tuning::retain_freed_memory();
    std::process::exit(jetgen::cli::main());
}
