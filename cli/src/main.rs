//! `twinctl`: parses the command line, runs the command, prints its output on stdout (text, or
//! JSON with `--json`) or `error: <message>` on stderr, and exits with a code from
//! `twinledger_cli::exit`.

use std::io::Write as _;
use std::process::ExitCode;

use twinledger_cli::{exit, parse_args, run};

fn main() -> ExitCode {
    let cli = match parse_args(std::env::args_os()) {
        Ok(cli) => cli,
        Err(e) => {
            // Usage errors (and a bare `twinctl`) are invalid input; --help and --version are
            // not errors.
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                exit::INVALID_INPUT
            } else {
                exit::OK
            });
        }
    };
    match run(&cli) {
        Ok(out) => {
            let text = if cli.json {
                format!("{:#}\n", out.json)
            } else {
                out.text
            };
            // A CLI's output is its interface. It is written through io::Write rather than
            // print! so that a closed pipe (`twinctl genesis show | head -1`) is not a panic.
            let mut stdout = std::io::stdout().lock();
            match stdout
                .write_all(text.as_bytes())
                .and_then(|()| stdout.flush())
            {
                Ok(()) => ExitCode::from(exit::OK),
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::from(exit::OK),
                Err(e) => {
                    eprintln!("error: cannot write to stdout: {e}");
                    ExitCode::from(exit::IO_ERROR)
                }
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
