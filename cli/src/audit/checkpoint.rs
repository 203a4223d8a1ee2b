//! `twinctl audit checkpoint`: save the node's latest checkpoint to a file.

use std::path::PathBuf;

use clap::Args;
use serde_json::json;

use crate::client::NodeClient;
use crate::{CliError, Output};

/// Save the node's latest checkpoint to a file.
#[derive(Debug, Args)]
pub struct Checkpoint {
    /// Where to write it.
    #[arg(long)]
    pub out: PathBuf,
}

impl Checkpoint {
    /// Runs the command.
    pub fn run(&self, node: &str) -> Result<Output, CliError> {
        let Self { out } = self;
        // An existing file is never overwritten; a path that cannot be written fails before
        // the node is asked.
        crate::files::check_output(out)?;
        let v = NodeClient::connect(node)?.get_json("/v1/checkpoint")?;
        let text = v["text"]
            .as_str()
            .ok_or_else(|| CliError::Invalid("node sent no checkpoint".into()))?;
        crate::files::write(out, text)?;
        Ok(Output {
            text: format!(
                "wrote checkpoint at height {} to {}\n",
                v["checkpoint"]["height"],
                out.display()
            ),
            json: json!({"file": out, "checkpoint": v["checkpoint"]}),
        })
    }
}
