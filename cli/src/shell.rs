//! `twinctl completions <SHELL>` and `twinctl man --out DIR`: shell completion scripts and man
//! pages, generated from the clap command (see [`crate::command`]), so they always match the
//! commands and flags `twinctl` accepts.

use std::path::PathBuf;

use crate::{CliError, Output};

/// `twinctl completions`.
#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell to write a completion script for (printed on stdout).
    #[arg(value_enum)]
    pub shell: Shell,
}

/// `twinctl man`.
#[derive(Debug, clap::Args)]
pub struct ManArgs {
    /// The existing directory to write the pages into (twinctl.1, twinctl-consent-grant.1, ...).
    #[arg(long)]
    pub out: PathBuf,
}

/// Runs `twinctl completions`.
pub fn run_completions(args: &CompletionsArgs) -> Output {
    let script = completions(crate::command(), args.shell);
    Output {
        json: serde_json::json!({ "shell": args.shell.to_string(), "script": script }),
        text: script,
    }
}

/// Runs `twinctl man`: a missing (or non-directory) `--out` is an I/O error and writes nothing.
pub fn run_man(args: &ManArgs) -> Result<Output, CliError> {
    let written = write_man_pages(crate::command(), &args.out)
        .map_err(CliError::io("write man pages to", &args.out))?;
    let mut text = format!(
        "wrote {} man pages to {}\n",
        written.len(),
        args.out.display()
    );
    for p in &written {
        text.push_str(&format!("  {}\n", p.display()));
    }
    Ok(Output {
        json: serde_json::json!({
            "dir": args.out.display().to_string(),
            "pages": written.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        }),
        text,
    })
}

pub use twinledger_shell::{Shell, completions, write_man_pages};
