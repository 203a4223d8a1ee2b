//! `twinctl receipt verify`: check a receipt offline against a genesis file and the certified
//! chain of validator-set changes (PROTOCOL.md §9.2, §9.3), print what it permits, and check it
//! against the request in front of a twin store (`--expect-*`).
//!
//! Also the pieces every evidence check shares (`audit verify-bundle`, `audit witness`,
//! `audit consistency`): reading a field strictly (it must be the canonical JSON rendering of
//! what it decodes to), reading a chain of changes, and verifying and merging chains.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use twinledger_core::codes::{Action, DataCategory, Purpose};
use twinledger_core::{
    Commitment, Decision, EventPayload, Genesis, Outcome, PublicKey, Receipt, ValidatorSets,
};
use twinledger_genesis::GenesisFile;

use crate::consent::action_alias;
use crate::{CliError, Output};

/// The key of a chain of validator-set changes in receipt answers, receipt files, evidence
/// bundles, `GET /v1/validator-sets` and `--validator-sets` files (PROTOCOL.md §9.3).
pub const CHANGES: &str = "validator_set_changes";

/// The keys a receipt file may hold (PROTOCOL.md §9.2); anything else is refused.
const RECEIPT_FILE_KEYS: [&str; 6] = [
    "id",
    "outcome",
    "receipt",
    CHANGES,
    "resource_salt",
    "reason_salt",
];

/// `twinctl receipt ...`
#[derive(Debug, Args)]
pub struct ReceiptArgs {
    /// The receipt command.
    #[command(subcommand)]
    pub command: ReceiptCommand,
}

/// The `kind` of an evidence bundle (PROTOCOL.md §9.3).
pub const BUNDLE_KIND: &str = "twinledger-evidence-bundle";

/// The receipt and the chain of changes of a piece of evidence (PROTOCOL.md §9.2, §9.3): an
/// evidence bundle (it has a `kind`: exactly the keys of its version), a receipt file (it has a
/// `receipt`: only the keys of a receipt file), or a bare receipt. Every field is read strictly
/// ([`canonical`]); a key that is not part of the format is refused by name (exit 6). `id` and
/// `outcome` are checked after the receipt verifies ([`check_id_and_outcome`]).
pub fn read_evidence(v: &Value) -> Result<(Receipt, Vec<Receipt>), CliError> {
    let obj = v
        .as_object()
        .ok_or_else(|| CliError::Invalid("not a receipt or evidence bundle".into()))?;
    if let Some(kind) = obj.get("kind") {
        if kind != &json!(BUNDLE_KIND) {
            return Err(CliError::Mismatch(format!(
                "field `kind` is {kind}, not \"{BUNDLE_KIND}\""
            )));
        }
        let keys: &[&str] = match obj.get("version").and_then(Value::as_u64) {
            Some(1) => &["kind", "version", "id", "outcome", "receipt"],
            Some(2) => &["kind", "version", "id", "outcome", "receipt", CHANGES],
            Some(3) => &[
                "kind", "version", "id", "outcome", "receipt", CHANGES, "history",
            ],
            _ => {
                return Err(CliError::Mismatch(format!(
                    "field `version` is {}, not 1, 2 or 3",
                    obj.get("version").unwrap_or(&Value::Null)
                )));
            }
        };
        if let Some(k) = obj.keys().find(|k| !keys.contains(&k.as_str())) {
            return Err(CliError::Mismatch(format!(
                "field `{k}` is not part of an evidence bundle of this version: nothing proves it"
            )));
        }
        if let Some(k) = keys.iter().find(|k| !obj.contains_key(**k)) {
            return Err(CliError::Mismatch(format!("field `{k}` is missing")));
        }
        return Ok((canonical(&v["receipt"], "receipt")?, changes_in(v)?));
    }
    if obj.contains_key("receipt") {
        if let Some(k) = obj
            .keys()
            .find(|k| !RECEIPT_FILE_KEYS.contains(&k.as_str()))
        {
            return Err(CliError::Mismatch(format!(
                "field `{k}` is not part of a receipt file: nothing proves it (PROTOCOL.md §9.2)"
            )));
        }
        return Ok((canonical(&v["receipt"], "receipt")?, changes_in(v)?));
    }
    Ok((canonical(v, "receipt")?, Vec::new()))
}

/// What the twin store is about to serve: each flag given must be what the receipt permits.
#[derive(Debug, Args, Default)]
pub struct Expect {
    /// The patient (did:key, the patient id) whose data is asked for.
    #[arg(long)]
    pub expect_patient: Option<String>,
    /// The requester (did:key of the actor that signed the request).
    #[arg(long)]
    pub expect_requester: Option<String>,
    /// The data category (e.g. vital-signs, GDIS).
    #[arg(long)]
    pub expect_category: Option<String>,
    /// The purpose of use (HL7 code, e.g. TREAT; a break-glass request is ETREAT).
    #[arg(long)]
    pub expect_purpose: Option<String>,
    /// The action (read, update, use, disclose, collect).
    #[arg(long)]
    pub expect_action: Option<String>,
    /// The twin resource reference asked for: it must open the request's resource commitment
    /// with the salt (`--resource-salt`, or `resource_salt` in the receipt file).
    #[arg(long, visible_alias = "expect-twin")]
    pub expect_resource: Option<String>,
    /// The salt of the resource commitment (64 hex digits), if not in the receipt file.
    #[arg(long)]
    pub resource_salt: Option<String>,
    /// The decision must be at most this old (block time against this machine's clock), e.g.
    /// `15m`, `2h`.
    #[arg(long)]
    pub max_age: Option<humantime::Duration>,
}

/// Receipt commands.
#[derive(Debug, Subcommand)]
pub enum ReceiptCommand {
    /// Verify a receipt offline against the validator set in force at its height (the genesis
    /// set and the certified chain of validator-set changes in the receipt file): event
    /// signature, the header's validator set, block certificate, results hash and inclusion
    /// proof. Prints what it permits: patient, requester, category, purpose, action, resource
    /// and time. Exit 0 if valid; 6 if it does not verify, a field of the file disagrees with
    /// what the receipt proves, or an `--expect-*` flag is not what it permits; 4 with
    /// `--require-permit` if valid but not a permit; 2 if the file is not a receipt.
    Verify {
        /// The receipt file (as written by `twinctl access request`), an evidence bundle
        /// (`twinctl audit prove`) or a bare receipt.
        file: PathBuf,
        /// The chain's genesis file.
        #[arg(long)]
        genesis: PathBuf,
        /// A chain of validator-set changes from a source you trust (e.g. written by `twinctl
        /// audit validator-sets --out`); merged with the receipt file's own.
        #[arg(long)]
        validator_sets: Option<PathBuf>,
        /// Exit 4 unless the receipt proves a permitted access.
        #[arg(long)]
        require_permit: bool,
        /// The patient's history (the answer of `GET /v1/patients/{did}/history`, PROTOCOL.md
        /// §11.3) at or after the receipt's block: verified, then the decision is re-derived
        /// from the events before the request (§11.4) and must be the receipt's; prints the
        /// grant that was live, or why each grant did not cover a deny (exit 6 if not).
        #[arg(long)]
        history: Option<PathBuf>,
        /// What the receipt must permit.
        #[command(flatten)]
        expect: Expect,
    },
}

/// Reads `v` as a `T` that must render back to exactly `v` (as a JSON value): no unknown keys,
/// no other spelling of a value. `field` names it in errors.
pub fn canonical<T: Serialize + DeserializeOwned>(v: &Value, field: &str) -> Result<T, CliError> {
    let t: T = serde_json::from_value(v.clone())
        .map_err(|e| CliError::Invalid(format!("field `{field}` is malformed: {e}")))?;
    if serde_json::to_value(&t).ok().as_ref() != Some(v) {
        return Err(CliError::Mismatch(format!(
            "field `{field}` is not in its canonical form (an unknown key or another spelling \
             of a value): refusing what the proof does not bind"
        )));
    }
    Ok(t)
}

/// The chain of validator-set changes under `obj[CHANGES]` (absent: none).
pub fn changes_in(obj: &Value) -> Result<Vec<Receipt>, CliError> {
    match obj.get(CHANGES) {
        None => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, r)| canonical(r, &format!("{CHANGES}[{i}]")))
            .collect(),
        Some(_) => Err(CliError::Invalid(format!(
            "field `{CHANGES}` is not a list"
        ))),
    }
}

/// Verifies a chain of changes from the genesis (PROTOCOL.md §9.3); `source` names it.
pub fn verify_changes(
    genesis: &Genesis,
    changes: &[Receipt],
    source: &str,
) -> Result<ValidatorSets, CliError> {
    ValidatorSets::verify(genesis, changes).map_err(|e| {
        CliError::Mismatch(format!(
            "the chain of validator-set changes in {source} does not verify: {e}"
        ))
    })
}

/// Reads and verifies a `--validator-sets` file: any JSON object with a `validator_set_changes`
/// list (a receipt answer, a bundle, `GET /v1/validator-sets`, `audit validator-sets --out`).
pub fn sets_file(genesis: &Genesis, path: &Path) -> Result<ValidatorSets, CliError> {
    let text = std::fs::read_to_string(path).map_err(CliError::io("read", path))?;
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| CliError::Invalid(format!("{}: not JSON: {e}", path.display())))?;
    if v.get(CHANGES).is_none() {
        return Err(CliError::Invalid(format!(
            "{}: no `{CHANGES}` list",
            path.display()
        )));
    }
    let changes = changes_in(&v).map_err(|e| match e {
        CliError::Mismatch(m) => CliError::Mismatch(format!("{}: {m}", path.display())),
        CliError::Invalid(m) => CliError::Invalid(format!("{}: {m}", path.display())),
        other => other,
    })?;
    verify_changes(genesis, &changes, &path.display().to_string())
}

/// Merges two verified chains of changes: one must extend the other (PROTOCOL.md §9.3).
pub fn merge(a: ValidatorSets, b: ValidatorSets) -> Result<ValidatorSets, CliError> {
    a.merge(b).map_err(|e| CliError::Mismatch(e.to_string()))
}

/// The sets in force: the chain `embedded` (from the receipt or bundle), merged with the one
/// in `trusted` if given.
pub fn sets_for(
    genesis: &Genesis,
    embedded: &[Receipt],
    source: &str,
    trusted: Option<&Path>,
) -> Result<ValidatorSets, CliError> {
    let own = verify_changes(genesis, embedded, source)?;
    match trusted {
        Some(p) => merge(own, sets_file(genesis, p)?),
        None => Ok(own),
    }
}

/// One line on the validator set a height was checked against.
pub fn set_line(sets: &ValidatorSets, height: u64) -> String {
    let n = sets.changes_in_force_at(height);
    let set = sets.set_at(height);
    let whence = match n {
        0 => "the genesis set".to_string(),
        n => format!(
            "set by the change in block {}, change {n} since genesis",
            sets.changes()[n - 1].height
        ),
    };
    format!(
        "validator set in force at block {height}: {} ({whence}; {} validator(s), power {})",
        set.hash(),
        set.validators().len(),
        set.total_power()
    )
}

/// A decision in words.
///
/// Verification output names the whole grant id (it is evidence, to be compared), where the
/// commands that ask for access show its short form.
pub fn describe_outcome(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Access(Decision::Permit { grant }) => format!("permitted under grant {grant}"),
        o => crate::codes::outcome_words(o, None),
    }
}

/// Checks that the top-level `id` and `outcome` of a receipt file or bundle, if present, are
/// what the verified receipt proves.
pub fn check_id_and_outcome(
    obj: &Value,
    receipt: &Receipt,
    outcome: &Outcome,
) -> Result<(), CliError> {
    if let Some(id) = obj.get("id") {
        let proven = receipt.event_id();
        if id != &json!(proven) {
            return Err(CliError::Mismatch(format!(
                "field `id` is {id}, but the receipt proves event {proven}"
            )));
        }
    }
    if let Some(o) = obj.get("outcome")
        && o != &json!(outcome)
    {
        return Err(CliError::Mismatch(format!(
            "field `outcome` is {o}, but the receipt proves {}",
            json!(outcome)
        )));
    }
    Ok(())
}

/// What an access or break-glass receipt permits, read from the signed event.
#[derive(Debug)]
struct Permits {
    patient: PublicKey,
    requester: PublicKey,
    category: DataCategory,
    purpose: Option<Purpose>,
    action: Action,
    resource: Commitment,
    break_glass: bool,
}

fn permits(r: &Receipt) -> Option<Permits> {
    let requester = r.event.event.author;
    match &r.event.event.payload {
        EventPayload::AccessRequest(a) => Some(Permits {
            patient: a.patient,
            requester,
            category: a.category,
            purpose: Some(a.purpose),
            action: a.action,
            resource: a.resource,
            break_glass: false,
        }),
        EventPayload::BreakGlassRequest(b) => Some(Permits {
            patient: b.patient,
            requester,
            category: b.category,
            purpose: None,
            action: b.action,
            resource: b.resource,
            break_glass: true,
        }),
        _ => None,
    }
}

fn salt32(hex_salt: &str, what: &str) -> Result<[u8; 32], CliError> {
    let mut s = [0u8; 32];
    hex::decode_to_slice(hex_salt, &mut s)
        .map_err(|_| CliError::Invalid(format!("{what} is not 64 hex digits")))?;
    Ok(s)
}

/// Checks every `--expect-*` flag against what the receipt permits; returns the names checked.
fn check_expectations(
    r: &Receipt,
    file_salt: Option<&str>,
    e: &Expect,
    now_ms: impl Fn() -> Result<u64, CliError>,
) -> Result<Vec<&'static str>, CliError> {
    let any = e.expect_patient.is_some()
        || e.expect_requester.is_some()
        || e.expect_category.is_some()
        || e.expect_purpose.is_some()
        || e.expect_action.is_some()
        || e.expect_resource.is_some();
    let mut checked = Vec::new();
    if let Some(max) = e.max_age {
        let now = now_ms()?;
        let age = now.saturating_sub(r.header.time.0);
        let max_ms = u64::try_from(max.as_millis()).unwrap_or(u64::MAX);
        if age > max_ms {
            return Err(CliError::Mismatch(format!(
                "the decision is {} old (block time {}), more than --max-age {max}",
                humantime::format_duration(std::time::Duration::from_millis(age)),
                crate::time::utc(r.header.time.0)
            )));
        }
        checked.push("time");
    }
    if !any {
        return Ok(checked);
    }
    let p = permits(r).ok_or_else(|| {
        CliError::Mismatch(format!(
            "the receipt is for a {} event, which permits no access to a twin",
            r.event.event.payload.kind()
        ))
    })?;
    let inv = |e: twinledger_core::codes::UnknownCode| CliError::Invalid(e.to_string());
    if let Some(d) = &e.expect_patient {
        let want = PublicKey::from_did(d)
            .map_err(|e| CliError::Invalid(format!("--expect-patient: {e}")))?;
        if want != p.patient {
            return Err(CliError::Mismatch(format!(
                "patient: the receipt permits access to patient {}, not {want}",
                p.patient
            )));
        }
        checked.push("patient");
    }
    if let Some(d) = &e.expect_requester {
        let want = PublicKey::from_did(d)
            .map_err(|e| CliError::Invalid(format!("--expect-requester: {e}")))?;
        if want != p.requester {
            return Err(CliError::Mismatch(format!(
                "requester: the receipt permits {}, not {want}",
                p.requester
            )));
        }
        checked.push("requester");
    }
    if let Some(c) = &e.expect_category {
        let want: DataCategory = c.parse().map_err(inv)?;
        if want != p.category {
            return Err(CliError::Mismatch(format!(
                "category: the receipt permits {}, not {want}",
                p.category
            )));
        }
        checked.push("category");
    }
    if let Some(c) = &e.expect_purpose {
        let want: Purpose = c.parse().map_err(inv)?;
        // A break-glass request names no purpose: it is emergency treatment.
        let has = p.purpose.unwrap_or(Purpose::EmergencyTreat);
        if want != has {
            return Err(CliError::Mismatch(format!(
                "purpose: the receipt permits {has}{}, not {want}",
                if p.break_glass { " (break-glass)" } else { "" }
            )));
        }
        checked.push("purpose");
    }
    if let Some(c) = &e.expect_action {
        let want: Action = action_alias(c).parse().map_err(inv)?;
        if want != p.action {
            return Err(CliError::Mismatch(format!(
                "action: the receipt permits {}, not {want}",
                p.action
            )));
        }
        checked.push("action");
    }
    if let Some(reference) = &e.expect_resource {
        let salt = match (&e.resource_salt, file_salt) {
            (Some(s), _) => salt32(s, "--resource-salt")?,
            (None, Some(s)) => salt32(s, "resource_salt in the receipt file")?,
            (None, None) => {
                return Err(CliError::Invalid(
                    "--expect-resource needs the commitment's salt: --resource-salt, or \
                     resource_salt in the receipt file"
                        .into(),
                ));
            }
        };
        if !p.resource.opens(&salt, reference.as_bytes()) {
            return Err(CliError::Mismatch(format!(
                "resource: {reference:?} with this salt does not open the request's resource \
                 commitment {}: the receipt is for another resource (or the salt is wrong)",
                p.resource.0
            )));
        }
        checked.push("resource");
    }
    Ok(checked)
}

/// Runs a receipt command (no node needed).
pub fn run(args: &ReceiptArgs) -> Result<Output, CliError> {
    let ReceiptCommand::Verify {
        file,
        genesis,
        validator_sets,
        require_permit,
        history,
        expect,
    } = &args.command;
    verify_file(
        file,
        genesis,
        validator_sets.as_deref(),
        *require_permit,
        history.as_deref(),
        expect,
        crate::time::now_ms,
    )
}

fn verify_file(
    file: &Path,
    genesis: &Path,
    trusted: Option<&Path>,
    require_permit: bool,
    history: Option<&Path>,
    expect: &Expect,
    now_ms: impl Fn() -> Result<u64, CliError>,
) -> Result<Output, CliError> {
    let text = std::fs::read_to_string(file).map_err(CliError::io("read", file))?;
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| CliError::Invalid(format!("{}: not a receipt: {e}", file.display())))?;
    let (receipt, changes) = read_evidence(&v)?;
    let g = GenesisFile::load(genesis)?;
    let ledger = g.ledger_genesis()?;
    if receipt.header.chain_id != ledger.chain_id() {
        return Err(CliError::Mismatch(format!(
            "receipt is for chain {}, the genesis is chain {}",
            receipt.header.chain_id,
            ledger.chain_id()
        )));
    }
    let sets = sets_for(&ledger, &changes, "the receipt file", trusted)?;
    let height = receipt.header.height;
    let outcome = sets.verify_receipt(&receipt).map_err(|e| {
        CliError::Mismatch(format!(
            "receipt does not verify against the validator set in force at block {height} \
             ({} validator-set change(s) known since genesis): {e}",
            sets.changes_in_force_at(height)
        ))
    })?;
    check_id_and_outcome(&v, &receipt, &outcome)?;
    for salt in ["resource_salt", "reason_salt"] {
        if let Some(s) = v.get(salt) {
            salt32(s.as_str().unwrap_or_default(), salt)?;
        }
    }
    let file_salt = v.get("resource_salt").and_then(Value::as_str);
    let checked = check_expectations(&receipt, file_salt, expect, now_ms)?;
    let decision = describe_outcome(&outcome);
    let time = receipt.header.time.0;
    let mut text = format!(
        "valid receipt: event {} final in block {height} at {}: {decision}\n{}\n",
        receipt.event_id(),
        crate::time::utc(time),
        set_line(&sets, height)
    );
    let mut j = json!({
        "valid": true,
        "event": receipt.event_id(),
        "kind": receipt.event.event.payload.kind(),
        "height": height,
        "time": time,
        "outcome": outcome,
        "requester": receipt.event.event.author,
        "validator_set": {
            "hash": sets.set_at(height).hash(),
            "changes_since_genesis": sets.changes_in_force_at(height),
        },
        "checked": checked,
    });
    match permits(&receipt) {
        Some(p) => {
            let opened = expect
                .expect_resource
                .as_ref()
                .filter(|_| checked.contains(&"resource"));
            text.push_str(&format!(
                "patient:   {}\nrequester: {}\naccess:    {} {} for {}\nresource:  {}\n",
                p.patient,
                p.requester,
                p.action,
                p.category,
                match p.purpose {
                    Some(purpose) => purpose.to_string(),
                    None => "ETREAT (break-glass)".to_string(),
                },
                match opened {
                    Some(r) => format!("{r:?} (opens commitment {})", p.resource.0),
                    None => format!(
                        "commitment {} (check it with --expect-resource and the salt)",
                        p.resource.0
                    ),
                }
            ));
            j["patient"] = json!(p.patient);
            j["category"] = json!(p.category);
            j["purpose"] = json!(p.purpose);
            j["action"] = json!(p.action);
            j["break_glass"] = json!(p.break_glass);
            j["resource_commitment"] = json!(p.resource);
            j["resource"] = json!(opened);
        }
        None => text.push_str(&format!(
            "event:     {} by {}\n",
            receipt.event.event.payload.kind(),
            receipt.event.event.author
        )),
    }
    if !checked.is_empty() {
        text.push_str(&format!("checked:   {}\n", checked.join(", ")));
    }
    if let Some(h) = crate::history::history_for(&v, history)? {
        let (t, c) = crate::history::consent_check(&ledger, &receipt, &outcome, &h, trusted)?;
        text.push_str(&t);
        j["consent"] = c;
    }
    if require_permit
        && !matches!(
            outcome,
            Outcome::Access(Decision::Permit { .. }) | Outcome::Access(Decision::BreakGlass)
        )
    {
        return Err(CliError::Denied(format!(
            "the receipt is valid but not a permit: {decision}"
        )));
    }
    Ok(Output { text, json: j })
}

#[cfg(test)]
mod tests {
    //! `--expect-*` and `--max-age` against what a receipt permits (PROTOCOL.md §9.2: read from
    //! the signed event, the resource by opening its commitment).
    use twinledger_core::devkit::{DevChain, dev_key};
    use twinledger_core::event::access::AccessRequest;
    use twinledger_core::event::break_glass::BreakGlassRequest;
    use twinledger_core::event::consent::{ConsentGrant, Grantee};
    use twinledger_core::event::delegation::Scope;
    use twinledger_core::{Hash, Timestamp};

    use super::*;

    const SALT: [u8; 32] = [7; 32];

    /// Receipts (unproved: only the event and header matter here) of an access request, a
    /// break-glass request and a consent grant.
    fn receipts() -> (DevChain, PublicKey, Vec<Receipt>) {
        let mut dc = DevChain::new(1);
        let alice = dev_key("receipt-cli/alice");
        let phys = dc.physician.clone();
        let grant = EventPayload::ConsentGrant(ConsentGrant {
            patient: alice.public(),
            grantee: Grantee::Actor(phys.public()),
            scope: Scope {
                categories: [DataCategory::VitalSigns].into_iter().collect(),
                purposes: [Purpose::Treat].into_iter().collect(),
                actions: [Action::Read].into_iter().collect(),
            },
            valid_from: Timestamp(0),
            valid_until: None,
        });
        let access = EventPayload::AccessRequest(AccessRequest {
            patient: alice.public(),
            category: DataCategory::VitalSigns,
            purpose: Purpose::Treat,
            action: Action::Read,
            resource: Commitment::new(&SALT, b"twin://alice/vitals"),
        });
        let bg = EventPayload::BreakGlassRequest(BreakGlassRequest {
            patient: alice.public(),
            category: DataCategory::Imaging,
            action: Action::Read,
            resource: Commitment::new(&SALT, b"twin://alice/ct"),
            reason: Commitment::new(&SALT, b"unconscious"),
        });
        let evs = vec![
            dc.event(&alice, grant),
            dc.event(&phys, access),
            dc.event(&phys, bg),
        ];
        let c = dc.commit(evs);
        assert!(c.rejected.is_empty(), "{:?}", c.rejected);
        let rs = (0..3)
            .map(|i| Receipt {
                event: c.block.events[i].clone(),
                index: u32::try_from(i).unwrap(),
                leaf_index: i as u64,
                inclusion_proof: Vec::<Hash>::new(),
                header: c.block.header.clone(),
                results: c.results.clone(),
                certificate: c.certificate.clone(),
            })
            .collect();
        (dc, alice.public(), rs)
    }

    fn check(r: &Receipt, e: &Expect) -> Result<Vec<&'static str>, CliError> {
        let t = r.header.time.0;
        check_expectations(r, Some(&hex::encode(SALT)), e, move || Ok(t + 60_000))
    }

    #[test]
    fn expectations_are_what_the_receipt_permits() {
        let (dc, alice, rs) = receipts();
        let (access, bg, grant) = (&rs[1], &rs[2], &rs[0]);
        let phys = dc.physician.public().to_did();
        let e = |f: fn(&mut Expect, String), v: &str| {
            let mut e = Expect::default();
            f(&mut e, v.to_string());
            e
        };
        let patient = |e: &mut Expect, v| e.expect_patient = Some(v);
        let requester = |e: &mut Expect, v| e.expect_requester = Some(v);
        let category = |e: &mut Expect, v| e.expect_category = Some(v);
        let purpose = |e: &mut Expect, v| e.expect_purpose = Some(v);
        let action = |e: &mut Expect, v| e.expect_action = Some(v);
        let resource = |e: &mut Expect, v| e.expect_resource = Some(v);
        let max_age = |e: &mut Expect, v: String| e.max_age = Some(v.parse().unwrap());
        // (receipt, expectation, Ok(field checked) or Err(field named))
        let table: Vec<(&Receipt, Expect, Result<&str, &str>)> = vec![
            (access, e(patient, &alice.to_did()), Ok("patient")),
            (access, e(patient, &phys), Err("patient:")),
            (access, e(requester, &phys), Ok("requester")),
            (access, e(requester, &alice.to_did()), Err("requester:")),
            (access, e(category, "vital-signs"), Ok("category")),
            (access, e(category, "GDIS"), Err("category:")),
            (access, e(purpose, "TREAT"), Ok("purpose")),
            (access, e(purpose, "HRESCH"), Err("purpose:")),
            (access, e(action, "read"), Ok("action")),
            (access, e(action, "disclose"), Err("action:")),
            (access, e(resource, "twin://alice/vitals"), Ok("resource")),
            (access, e(resource, "twin://alice/genome"), Err("resource:")),
            (access, e(max_age, "2m"), Ok("time")),
            (access, e(max_age, "30s"), Err("--max-age")),
            (bg, e(purpose, "ETREAT"), Ok("purpose")),
            (bg, e(purpose, "TREAT"), Err("(break-glass)")),
            (bg, e(category, "imaging"), Ok("category")),
            (bg, e(resource, "twin://alice/ct"), Ok("resource")),
            (grant, e(patient, &alice.to_did()), Err("permits no access")),
            (grant, Expect::default(), Ok("")),
        ];
        for (i, (r, exp, want)) in table.into_iter().enumerate() {
            match (check(r, &exp), want) {
                (Ok(checked), Ok("")) => assert!(checked.is_empty(), "row {i}"),
                (Ok(checked), Ok(f)) => assert_eq!(checked, vec![f], "row {i}"),
                (Err(CliError::Mismatch(m)), Err(f)) => assert!(m.contains(f), "row {i}: {m}"),
                (got, want) => panic!("row {i}: got {got:?}, want {want:?}"),
            }
        }
        // Without a salt the resource cannot be checked: invalid input, not a pass.
        let exp = e(resource, "twin://alice/vitals");
        assert!(matches!(
            check_expectations(access, None, &exp, || Ok(0)),
            Err(CliError::Invalid(_))
        ));
    }
}
