use std::process::ExitCode;

// mimalloc frees and allocates the many small maps of a big prd.json about
// twice as fast as glibc (BENCHMARKS.md); its v2 without transparent huge
// pages starts as fast as glibc. Its big blocks are counted for the scripts'
// memory budget.
#[global_allocator]
static GLOBAL: aloop::memory::Counting<mimalloc::MiMalloc> = aloop::memory::Counting(mimalloc::MiMalloc);

fn main() -> ExitCode {
    aloop::cancel::install();
    let code = match aloop::app::run(std::env::args_os().collect()) {
        Ok(code) => code,
        Err(err) => {
            let code = aloop::error::exit_code(&err);
            match code {
                130 => eprintln!("aloop: interrupted"),
                _ => eprintln!("error: {err:#}"),
            }
            code
        }
    };
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
