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
/// `mi_option_allow_thp`, ibid.
const MI_OPTION_ALLOW_THP: std::ffi::c_int = 37;

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
    // No transparent huge pages: with memory given back at once, every burst of allocation (a
    // report decoded, a window merged, a past moment folded) faulted in and zeroed whole 2 MiB
    // pages again — a fifth of the CPU of a past moment's read, and renders about 20 % slower
    // (docs/benchmarks.md, "History"). mimalloc reads `MIMALLOC_ALLOW_THP` before `main`, so the
    // process flag is set here too, unless that variable decides.
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
        // SAFETY: as above.
        unsafe { mi_option_set(MI_OPTION_ALLOW_THP, 0) };
        #[cfg(target_os = "linux")]
        let _ = rustix::thread::disable_transparent_huge_pages(true);
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
