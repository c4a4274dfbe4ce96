use std::process::ExitCode;

use clap::Parser;

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
