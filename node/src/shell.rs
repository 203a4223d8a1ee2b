//! Shell completions and man pages for `twinledger-node` and `twinledger-devnet` (their
//! `completions <SHELL>` and `man --out DIR` subcommands): `twinledger-shell`, shared with
//! `twinctl`.

pub use twinledger_shell::*;
