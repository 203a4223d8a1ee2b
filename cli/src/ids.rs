//! Ids typed by people: a whole id (64 hex digits) or any unique prefix of one.
//!
//! Text output shows ids shortened to [`SHORT`] hex digits; every command that takes an id
//! accepts that short form (or any other unique prefix of at least [`MIN_PREFIX`] digits) and
//! resolves it against the ids the command can see (the patient's grants, the review queue).

use crate::CliError;

/// Hex digits shown for an id in text output: long enough to be unique in practice, short
/// enough to read, and always accepted back as a prefix.
pub const SHORT: usize = 16;

/// The fewest hex digits accepted as a prefix.
pub const MIN_PREFIX: usize = 4;

/// The short form of a 64-digit id, as text output shows it.
pub fn short(id: &str) -> &str {
    id.get(..SHORT).unwrap_or(id)
}

/// Whether `given` is a whole id (64 hex digits), which needs no lookup.
pub fn is_whole(given: &str) -> bool {
    given.len() == 64 && given.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Resolves `given` (a whole id or a unique prefix, case-insensitive) to one of `candidates`
/// (64-digit lower-case hex ids). `what` names the kind of id in errors ("grant id").
///
/// A whole id is returned as given (lower-cased) even when it is not among the candidates, so
/// that the node, not the listing, decides what happens to an id the listing does not show.
pub fn resolve<I, S>(what: &str, given: &str, candidates: I) -> Result<String, CliError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let g = given.trim().to_ascii_lowercase();
    if g.is_empty() || !g.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(CliError::Invalid(format!(
            "{what} {given:?} is not hex: give the id as shown (or all 64 hex digits)"
        )));
    }
    if g.len() > 64 {
        return Err(CliError::Invalid(format!(
            "{what} {given:?} is longer than 64 hex digits"
        )));
    }
    if is_whole(&g) {
        return Ok(g);
    }
    if g.len() < MIN_PREFIX {
        return Err(CliError::Invalid(format!(
            "{what} {given:?} is too short: give at least {MIN_PREFIX} hex digits"
        )));
    }
    let mut found: Vec<String> = candidates
        .into_iter()
        .map(|c| c.as_ref().to_ascii_lowercase())
        .filter(|c| c.starts_with(&g))
        .collect();
    found.sort();
    found.dedup();
    match found.len() {
        0 => Err(CliError::Invalid(format!(
            "no {what} starts with {g}: list them to see the ids"
        ))),
        1 => Ok(found.remove(0)),
        n => Err(CliError::Invalid(format!(
            "{n} {what}s start with {g} ({}): give more digits",
            found
                .iter()
                .take(5)
                .map(|f| short(f))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "96a6f00000000000000000000000000000000000000000000000000000000001";
    const B: &str = "96a6f00000000000000000000000000000000000000000000000000000000002";
    const C: &str = "1234000000000000000000000000000000000000000000000000000000000000";

    #[test]
    fn a_unique_prefix_resolves_and_the_short_form_round_trips() {
        assert_eq!(resolve("grant id", "1234", [A, B, C]).unwrap(), C);
        assert_eq!(resolve("grant id", short(C), [A, B, C]).unwrap(), C);
        assert_eq!(resolve("grant id", "96A6F", [A, C]).unwrap(), A);
        assert_eq!(resolve("grant id", B, [A]).unwrap(), B, "whole ids pass");
    }

    #[test]
    fn ambiguous_unknown_short_and_malformed_prefixes_are_named() {
        let e = resolve("grant id", "96a6", [A, B, C])
            .unwrap_err()
            .to_string();
        assert!(e.contains("2 grant ids start with 96a6"), "{e}");
        let e = resolve("grant id", "ffff", [A, B]).unwrap_err().to_string();
        assert!(e.contains("no grant id starts with ffff"), "{e}");
        let e = resolve("grant id", "96a", [A]).unwrap_err().to_string();
        assert!(e.contains("too short"), "{e}");
        let e = resolve("grant id", "xyz1", [A]).unwrap_err().to_string();
        assert!(e.contains("not hex"), "{e}");
        let long = format!("{A}0");
        let e = resolve("grant id", &long, [A]).unwrap_err().to_string();
        assert!(e.contains("longer than 64"), "{e}");
    }
}
