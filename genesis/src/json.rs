//! Parsing with errors that name the field: `validators[2].consensus_key: malformed did:key ...`.
//!
//! serde_json reports a line and column but not the field path. When the typed parse fails on
//! the data (not the syntax), the document is parsed again as a `serde_json::Value` and each
//! field is deserialised on its own, following the file's schema, until the first failing one
//! is found: its path and serde's message make the error. Only the failure path costs this.

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::{
    ActorEntry, AuditorEntry, GenesisFile, GenesisFileError, GenesisLimits, ObserverEntry,
    OrgEntry, ValidatorEntry,
};
use twinledger_core::{PublicKey, Role};

/// `Err((path, message))` for the first field that does not deserialise.
type Located = Result<(), (String, String)>;
/// Checks a value found at a path.
type Check = fn(&Value, &str) -> Located;

/// Parses a genesis file's JSON (no validation beyond the types).
pub(crate) fn parse(json: &str) -> Result<GenesisFile, GenesisFileError> {
    let size = json.len() as u64;
    let max = crate::MAX_GENESIS_FILE_BYTES;
    if size > max {
        return Err(GenesisFileError::TooLarge { size, max });
    }
    match serde_json::from_str::<GenesisFile>(json) {
        Ok(file) => {
            // serde also accepts a struct written as a list of its field values; a genesis
            // file is edited by people, so only the one form with field names is accepted.
            let value: Value =
                serde_json::from_str(json).map_err(|e| GenesisFileError::Syntax(e.to_string()))?;
            genesis(&value, "genesis")
                .map_err(|(path, message)| GenesisFileError::Malformed { path, message })?;
            Ok(file)
        }
        Err(e) if e.is_data() => {
            let located = serde_json::from_str::<Value>(json)
                .ok()
                .and_then(|v| genesis(&v, "genesis").err());
            let (path, message) = located.unwrap_or_else(|| ("genesis".into(), e.to_string()));
            Err(GenesisFileError::Malformed { path, message })
        }
        Err(e) => Err(GenesisFileError::Syntax(e.to_string())),
    }
}

/// Deserialises one value as `T`.
fn leaf<T: DeserializeOwned>(v: &Value, path: &str) -> Located {
    T::deserialize(v)
        .map(drop)
        .map_err(|e| (path.to_owned(), e.to_string()))
}

/// Checks that a value is an object, then its listed fields one by one, then the object as a
/// whole (which finds missing and unknown fields).
fn object<T: DeserializeOwned>(v: &Value, path: &str, fields: &[(&str, Check)]) -> Located {
    let obj = is_object(v, path)?;
    for (name, check) in fields {
        if let Some(field) = obj.get(*name) {
            check(field, &format!("{path}.{name}"))?;
        }
    }
    leaf::<T>(v, path)
}

/// The value as an object, or an error naming what it is instead.
fn is_object<'a>(
    v: &'a Value,
    path: &str,
) -> Result<&'a serde_json::Map<String, Value>, (String, String)> {
    v.as_object().ok_or_else(|| {
        let found = match v {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Number(_) => "a number",
            Value::String(_) => "a string",
            Value::Array(_) => "a list",
            Value::Object(_) => "an object",
        };
        (
            path.to_owned(),
            format!("expected an object with named fields, found {found}"),
        )
    })
}

/// Checks every element of a list.
fn list(v: &Value, path: &str, item: Check) -> Located {
    let Some(items) = v.as_array() else {
        return leaf::<Vec<()>>(v, path);
    };
    for (i, x) in items.iter().enumerate() {
        item(x, &format!("{path}[{i}]"))?;
    }
    Ok(())
}

fn genesis(v: &Value, path: &str) -> Located {
    let obj = is_object(v, path)?;
    let fields: [(&str, Check); 9] = [
        ("version", leaf::<u8>),
        ("chain_name", leaf::<String>),
        ("genesis_time_ms", leaf::<u64>),
        ("organisations", |v, p| list(v, p, org)),
        ("validators", |v, p| list(v, p, validator)),
        ("auditors", |v, p| list(v, p, auditor)),
        ("actors", |v, p| list(v, p, actor)),
        ("limits", limits),
        ("observers", |v, p| list(v, p, observer)),
    ];
    for (name, check) in fields {
        if let Some(field) = obj.get(name) {
            // Top-level fields are named without a prefix: `validators[2].power`.
            check(field, name)?;
        }
    }
    leaf::<GenesisFile>(v, path)
}

fn org(v: &Value, path: &str) -> Located {
    object::<OrgEntry>(
        v,
        path,
        &[("name", leaf::<String>), ("key", leaf::<PublicKey>)],
    )
}

fn validator(v: &Value, path: &str) -> Located {
    object::<ValidatorEntry>(
        v,
        path,
        &[
            ("organisation", leaf::<PublicKey>),
            ("consensus_key", leaf::<PublicKey>),
            ("power", leaf::<u64>),
            ("peer_id", leaf::<String>),
            ("listen_addr", leaf::<String>),
        ],
    )
}

fn auditor(v: &Value, path: &str) -> Located {
    object::<AuditorEntry>(
        v,
        path,
        &[("name", leaf::<String>), ("key", leaf::<PublicKey>)],
    )
}

fn observer(v: &Value, path: &str) -> Located {
    object::<ObserverEntry>(
        v,
        path,
        &[("name", leaf::<String>), ("peer_id", leaf::<String>)],
    )
}

fn actor(v: &Value, path: &str) -> Located {
    object::<ActorEntry>(
        v,
        path,
        &[
            ("key", leaf::<PublicKey>),
            ("organisation", leaf::<PublicKey>),
            ("role", leaf::<Role>),
        ],
    )
}

fn limits(v: &Value, path: &str) -> Located {
    object::<GenesisLimits>(
        v,
        path,
        &[
            ("max_event_bytes", leaf::<u32>),
            ("max_events_per_block", leaf::<u32>),
            ("max_grants_per_patient", leaf::<u32>),
            ("max_event_ttl_ms", leaf::<u64>),
            ("block_interval_ms", leaf::<u64>),
            ("mempool_size", leaf::<u32>),
        ],
    )
}
