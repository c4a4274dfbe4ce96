use std::process::ExitCode;

use clap::Parser;

/// glibc's allocator spent a fifth of a render consolidating and unlinking free chunks
/// (docs/benchmarks.md, "Profiles").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = scopehub::config::Cli::parse();
    match scopehub::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line, naming the problem and its cause chain.
            eprintln!("scopehub: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
