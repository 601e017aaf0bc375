//! The `jetgen` binary; all logic lives in `jetgen::cli`.
fn main() {
    // the CLI owns its process: keep freed tensor memory (see `jetgen::malloc_tuning`)
    jetgen::malloc_tuning::retain_freed_memory();
    // no panic message is ever printed: a panic anywhere (a bug) becomes one error line
    jetgen::quiet_panic::silence_process();
    let code = jetgen::quiet_panic::catch_quietly(jetgen::cli::main).unwrap_or_else(|panic| {
        eprintln!("error: internal error ({panic}); please report this as a jetgen bug");
        101
    });
    std::process::exit(code);
}
