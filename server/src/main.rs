use std::process::ExitCode;

use clap::Parser;

/// glibc's allocator spent a fifth of a render consolidating and unlinking free chunks
/// (docs/benchmarks.md, "Profiles").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

// mimalloc's C API, linked in with the allocator above. `mi_option_t` is a C enum.
unsafe extern "C" {
    fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
}

/// `mi_option_purge_delay` in mimalloc v2's `mimalloc.h` (the version the `mimalloc` crate builds
/// without features).
const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;

fn main() -> ExitCode {
    // Freed memory goes back to the system at once instead of after a delay: the collector frees
    // tens of megabytes per render on blocking-pool threads, and with the default delay (10 ms,
    // 100 ms for arenas) the live benchmark's server held twice the memory it used (509 MiB
    // resident at 50 probes against 250 MiB with no delay), for no measurable CPU saved.
    // `MIMALLOC_PURGE_DELAY` in the environment still decides, as mimalloc documents.
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: a documented option set once, before any other thread exists.
        unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
    }
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
