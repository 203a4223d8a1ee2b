//! Exit codes that scripts can rely on, defined once here and listed in every `--help`.
//! A code's meaning never changes; new outcomes get new codes.

/// Success.
pub const OK: u8 = 0;
/// Invalid input: bad arguments (clap usage errors included), a malformed did:key, id, code or
/// time, a malformed or invalid genesis file, a refused change to a genesis file, an output file
/// that already exists, or a request the node refused as malformed or inapplicable (an unknown
/// grant, something already done).
pub const INVALID_INPUT: u8 = 2;
/// I/O error: a file cannot be read or written (missing, no such directory, no permission).
pub const IO_ERROR: u8 = 3;
/// Denied: an access decision was deny, the node refused the requester (401/403, or a rule that
/// the key may not do this: reviewing its own break-glass access, acting for a patient it does
/// not represent, a revoked or unknown key), or a receipt is valid but not a permit.
pub const DENIED: u8 = 4;
/// The node cannot be reached, or failed (5xx).
pub const NODE_UNREACHABLE: u8 = 5;
/// Verification failed: a chain, a receipt, an evidence bundle, a patient's history or a
/// checkpoint does not verify (or two checkpoints fork), or a twin copy does not match its
/// anchor.
pub const MISMATCH: u8 = 6;

/// Every code with its meaning, in the order `--help` lists them.
pub const ALL: [(u8, &str); 6] = [
    (OK, "ok"),
    (
        INVALID_INPUT,
        "invalid input: bad arguments, a malformed key, id, code, time or genesis file, an \
         output file that exists, a request the node refused as invalid",
    ),
    (
        IO_ERROR,
        "I/O error: a file cannot be read or written (missing, no such directory, no permission)",
    ),
    (
        DENIED,
        "denied: access denied, the node refused the requester (e.g. a self-review), or a \
         receipt that is not a permit",
    ),
    (NODE_UNREACHABLE, "node unreachable or failing (5xx)"),
    (
        MISMATCH,
        "verification failed: a chain, receipt, bundle, history or checkpoint does not verify, \
         or a twin copy does not match its anchor",
    ),
];

/// The exit-code section of `--help`.
pub fn help() -> String {
    let mut s = String::from("Exit codes:\n");
    for (code, meaning) in ALL {
        s.push_str(&wrapped(&format!("  {code}  "), meaning));
    }
    s.push_str("Errors are printed on stderr as `error: <message>`.");
    s
}

/// Help lines are wrapped here, at [`HELP_WIDTH`] columns under a hanging indent, so that clap
/// (which wraps at the terminal's width, or 100 without one) never breaks them again.
const HELP_WIDTH: usize = 78;

/// `meaning` after `lead`, wrapped at [`HELP_WIDTH`], continuation lines indented to match.
fn wrapped(lead: &str, meaning: &str) -> String {
    let indent = " ".repeat(lead.len());
    let mut out = String::new();
    let mut line = lead.to_string();
    for word in meaning.split_whitespace() {
        if line.len() > lead.len() && line.len() + 1 + word.len() > HELP_WIDTH {
            out.push_str(line.trim_end());
            out.push('\n');
            line = indent.clone();
        } else if line.len() > lead.len() {
            line.push(' ');
        }
        line.push_str(word);
    }
    out.push_str(&line);
    out.push('\n');
    out
}

/// `text` with every run of whitespace made one space: help text compared whatever its wrapping.
pub fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_pinned() {
        assert_eq!(
            ALL.map(|(c, _)| c),
            [0, 2, 3, 4, 5, 6],
            "exit codes are an interface: never renumber them"
        );
        let h = help();
        for (code, meaning) in ALL {
            assert!(
                one_line(&h).contains(&format!("{code} {}", one_line(meaning))),
                "{h}"
            );
        }
        assert!(
            h.lines().all(|l| l.len() <= HELP_WIDTH),
            "clap would wrap again: {h}"
        );
    }
}
