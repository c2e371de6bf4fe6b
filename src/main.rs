use std::io::Write;
use std::process::ExitCode;

// mimalloc frees and allocates the many small maps of a big prd.json faster
// than glibc (BENCHMARKS.md); its v2 without transparent huge
// pages starts as fast as glibc. Its big blocks are counted for the scripts'
// memory budget.
#[global_allocator]
static GLOBAL: aloop::counting_alloc::Counting<mimalloc::MiMalloc> =
    aloop::counting_alloc::Counting(mimalloc::MiMalloc);

fn main() -> ExitCode {
    aloop::cancel::install();
    aloop::supervise::init();
    let code = match aloop::app::run(std::env::args_os().collect()) {
        Ok(code) => code,
        Err(err) => {
            // After SIGHUP the terminal may be gone: a failed write is no reason to panic.
            let mut stderr = std::io::stderr();
            if err.downcast_ref::<aloop::error::Interrupted>().is_some() {
                let _ = writeln!(stderr, "aloop: interrupted ({})", aloop::cancel::cause());
            } else {
                let _ = writeln!(stderr, "error: {err:#}");
            }
            aloop::error::exit_code(&err)
        }
    };
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
