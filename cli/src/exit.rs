//! Exit codes that scripts can rely on, defined once here and listed in every `--help`.
//! A code's meaning never changes; new outcomes get new codes.

/// Success.
pub const OK: u8 = 0;
/// Invalid input: bad arguments (clap usage errors included), a malformed did:key, a malformed
/// or invalid genesis file, a refused change, an existing file that `init` would overwrite.
pub const INVALID_INPUT: u8 = 2;
/// I/O error: a file cannot be read or written.
pub const IO_ERROR: u8 = 3;
/// Denied: an access decision was deny, the node refused the requester (401/403), or a receipt
/// is valid but not a permit.
pub const DENIED: u8 = 4;
/// The node cannot be reached, or failed (5xx).
pub const NODE_UNREACHABLE: u8 = 5;

/// Verification failed: a chain, a receipt or a patient's history does not verify, or a twin
/// copy does not match its anchor.
pub const MISMATCH: u8 = 6;

/// Every code with its meaning, in the order `--help` lists them.
pub const ALL: [(u8, &str); 6] = [
    (OK, "ok"),
    (
        INVALID_INPUT,
        "invalid input: bad arguments, a malformed key, a malformed or invalid genesis file",
    ),
    (IO_ERROR, "I/O error: a file cannot be read or written"),
    (
        DENIED,
        "denied: access denied, requester refused, or a receipt that is not a permit",
    ),
    (NODE_UNREACHABLE, "node unreachable or failing"),
    (
        MISMATCH,
        "mismatch: a chain, receipt, history or twin copy does not verify",
    ),
];

/// The exit-code section of `--help`.
pub fn help() -> String {
    use std::fmt::Write as _;
    let mut s = String::from("Exit codes:\n");
    for (code, meaning) in ALL {
        let _ = writeln!(s, "  {code}  {meaning}");
    }
    s.push_str("Errors are printed on stderr as `error: <message>`.");
    s
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
            assert!(h.contains(&format!("  {code}  {meaning}")), "{h}");
        }
    }
}
