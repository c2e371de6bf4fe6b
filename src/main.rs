use std::process::ExitCode;

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
