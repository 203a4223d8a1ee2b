//! A blocking client of a node's HTTP API: signed reads, event submission, waiting for finality.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use twinledger_core::request::RequestAuth;
use twinledger_core::{ChainId, Event, EventId, EventPayload, Keypair, SignedEvent, Timestamp};

use crate::CliError;
use crate::time::now_ms;

/// Default node address.
pub const DEFAULT_NODE: &str = "http://127.0.0.1:7600";

/// How long a signed event stays valid if no block takes it.
const EVENT_TTL_MS: u64 = 10 * 60 * 1000;

thread_local! {
    /// What `--ca-cert` / `--client-cert` / `--client-key` name, for the command running on
    /// this thread ([`use_tls`]).
    static TLS: std::cell::RefCell<TlsSettings> =
        const { std::cell::RefCell::new(TlsSettings { roots: Vec::new(), identity: None }) };
}

/// The TLS settings of the command running on this thread.
#[derive(Clone, Default)]
pub struct TlsSettings {
    /// Extra CA certificates to trust (besides the system's roots).
    roots: Vec<reqwest::Certificate>,
    /// A client certificate and key, for a node that requires one.
    identity: Option<reqwest::Identity>,
}

impl std::fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSettings")
            .field("roots", &self.roots.len())
            .field("identity", &self.identity.is_some())
            .finish()
    }
}

/// While alive, [`NodeClient::connect`] on this thread uses the TLS settings it was made with;
/// dropping it restores the settings before.
#[derive(Debug)]
pub struct TlsGuard(TlsSettings);

impl Drop for TlsGuard {
    fn drop(&mut self) {
        let previous = std::mem::take(&mut self.0);
        TLS.with(|c| *c.borrow_mut() = previous);
    }
}

/// Uses, for `https://` node addresses and for the command that runs on this thread while the
/// guard lives: the CA certificates of a PEM file (`--ca-cert`), trusted besides the system's
/// roots, and a client certificate with its key (`--client-cert`, `--client-key`, PEM) for a
/// node that requires one. A missing file, or one without a certificate or key, is refused,
/// naming the file.
pub fn use_tls(
    ca_cert: Option<&std::path::Path>,
    client_cert: Option<&std::path::Path>,
    client_key: Option<&std::path::Path>,
) -> Result<TlsGuard, CliError> {
    let mut settings = TlsSettings::default();
    if let Some(path) = ca_cert {
        let bytes = std::fs::read(path).map_err(CliError::io("read", path))?;
        let refuse = |why: String| {
            CliError::Invalid(format!(
                "the CA certificate file {} (--ca-cert or TWINCTL_CA_CERT) {why}",
                path.display()
            ))
        };
        let certs = reqwest::Certificate::from_pem_bundle(&bytes)
            .map_err(|e| refuse(format!("is not PEM: {e}")))?;
        if certs.is_empty() {
            return Err(refuse("holds no CERTIFICATE block".into()));
        }
        settings.roots = certs;
    }
    match (client_cert, client_key) {
        (None, None) => {}
        (Some(_), None) | (None, Some(_)) => {
            return Err(CliError::Invalid(
                "--client-cert and --client-key go together (TWINCTL_CLIENT_CERT, \
                 TWINCTL_CLIENT_KEY)"
                    .into(),
            ));
        }
        (Some(cert), Some(key)) => {
            let mut pem = std::fs::read(cert).map_err(CliError::io("read", cert))?;
            let key_pem = std::fs::read(key).map_err(CliError::io("read", key))?;
            pem.push(b'\n');
            pem.extend_from_slice(&key_pem);
            let identity = reqwest::Identity::from_pem(&pem).map_err(|e| {
                CliError::Invalid(format!(
                    "the client certificate {} and key {} (--client-cert, --client-key) are \
                     not a PEM certificate and private key: {e}",
                    cert.display(),
                    key.display()
                ))
            })?;
            settings.identity = Some(identity);
        }
    }
    Ok(TlsGuard(TLS.with(|c| c.replace(settings))))
}

/// A connection to one node.
#[derive(Debug)]
pub struct NodeClient {
    base: String,
    http: reqwest::blocking::Client,
    /// The node's chain.
    pub chain_id: ChainId,
}

/// What to try when the node cannot be reached.
const START_HINT: &str = "is it running? (start one with `cargo run -p twinledger-node -- --dev`, \
                          or set TWINCTL_NODE / --node)";

/// A failure to talk to the node at `base`, naming the cause at the bottom of the error chain.
fn unreachable(base: &str, e: impl std::error::Error) -> CliError {
    let mut cause = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        cause = s.to_string();
        source = s.source();
    }
    CliError::Unreachable(format!("node {base}: {cause}"))
}

/// A request that did not get an answer: a node that is down (or not there) is named with what
/// to try; other transport failures with their cause.
fn send_failed(base: &str, e: reqwest::Error) -> CliError {
    if e.is_connect() || e.is_timeout() {
        let mut cause = String::new();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            cause = s.to_string();
            source = s.source();
        }
        let why = if e.is_timeout() {
            "timed out".to_string()
        } else {
            cause
        };
        return CliError::Unreachable(format!(
            "cannot reach the node at {base} ({why}): {START_HINT}"
        ));
    }
    unreachable(base, e)
}

/// The node's base URL from `--node` / `TWINCTL_NODE`: `http://HOST:PORT` or `https://...`;
/// a bare `HOST:PORT` is taken as `http://HOST:PORT`. Anything else is refused, naming it.
pub fn base_url(node: &str) -> Result<String, CliError> {
    let given = node.trim();
    let refuse = |why: String| {
        CliError::Invalid(format!(
            "the node address {node:?} (--node or TWINCTL_NODE) {why}; give it as \
             http://HOST:PORT, e.g. {DEFAULT_NODE}"
        ))
    };
    let full = match given.split_once("://") {
        Some((scheme, _))
            if scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https") =>
        {
            given.to_string()
        }
        Some((scheme, _)) => {
            return Err(refuse(format!("has scheme {scheme:?}, not http or https")));
        }
        None => format!("http://{given}"),
    };
    let url = reqwest::Url::parse(&full).map_err(|e| refuse(format!("is not a URL ({e})")))?;
    if url.host_str().is_none_or(str::is_empty) {
        return Err(refuse("names no host".into()));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(refuse("has a query or fragment".into()));
    }
    Ok(full.trim_end_matches('/').to_string())
}

impl NodeClient {
    /// Connects and learns the chain id from `/health`.
    pub fn connect(node: &str) -> Result<Self, CliError> {
        let base = base_url(node)?;
        let mut builder = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(70))
            .connect_timeout(Duration::from_secs(10));
        let tls = TLS.with(|c| c.borrow().clone());
        for c in tls.roots {
            builder = builder.add_root_certificate(c);
        }
        if let Some(identity) = tls.identity {
            builder = builder.identity(identity);
        }
        let http = builder.build().map_err(|e| unreachable(&base, e))?;
        let r = http
            .get(format!("{base}/health"))
            .send()
            .map_err(|e| send_failed(&base, e))?;
        // A halted or stalled node answers 503 with its status: name it.
        let status = r.status();
        let v: Value = r.json().map_err(|_| {
            CliError::Unreachable(format!(
                "{base}/health answered {status} without JSON: is {base} a Twinledger node's API \
                 address? (set TWINCTL_NODE / --node)"
            ))
        })?;
        if !status.is_success() {
            return Err(CliError::Unreachable(format!(
                "the node at {base} is {} ({status}): see its log",
                v["status"].as_str().unwrap_or("failing")
            )));
        }
        let chain_id = v["chain_id"]
            .as_str()
            .and_then(|c| ChainId::from_hex(c).ok())
            .ok_or_else(|| {
                CliError::Unreachable(format!(
                    "{base}/health gave no chain id: is {base} a Twinledger node's API address?"
                ))
            })?;
        Ok(Self {
            base,
            http,
            chain_id,
        })
    }

    fn answer(&self, r: reqwest::blocking::Response) -> Result<(u16, Value), CliError> {
        let status = r.status().as_u16();
        let v: Value = r.json().map_err(|e| unreachable(&self.base, e))?;
        if status >= 400 {
            let code = v["error"]["code"].as_str().unwrap_or("unknown").to_string();
            let message = v["error"]["message"].as_str().unwrap_or("").to_string();
            return Err(CliError::Node {
                status,
                code,
                message,
            });
        }
        Ok((status, v))
    }

    /// A POST of JSON.
    pub fn post_json(&self, path: &str, body: &Value) -> Result<Value, CliError> {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .json(body)
            .send()
            .map_err(|e| send_failed(&self.base, e))?;
        self.answer(r).map(|(_, v)| v)
    }

    /// An unsigned GET of public data (checkpoints, consistency proofs).
    pub fn get_json(&self, path: &str) -> Result<Value, CliError> {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .map_err(|e| send_failed(&self.base, e))?;
        self.answer(r).map(|(_, v)| v)
    }

    /// A GET request carrying `key`'s signature over method, path, empty body, time and nonce.
    fn signed(
        &self,
        key: &Keypair,
        path: &str,
    ) -> Result<reqwest::blocking::RequestBuilder, CliError> {
        let mut nonce = [0u8; 16];
        getrandom::fill(&mut nonce).map_err(|e| CliError::Invalid(format!("OS RNG: {e}")))?;
        let auth = RequestAuth::sign(
            key,
            &self.chain_id,
            "GET",
            path,
            b"",
            Timestamp(now_ms()?),
            nonce,
        );
        let mut req = self.http.get(format!("{}{path}", self.base));
        for (h, v) in auth.headers() {
            req = req.header(h, v);
        }
        Ok(req)
    }

    /// A POST of the JSON `body` signed by `key` (PROTOCOL.md §11.1: method POST, the path and
    /// the blake3 of the exact body bytes sent). Returns the answer and the body bytes signed.
    pub fn signed_post(
        &self,
        key: &Keypair,
        path: &str,
        body: &Value,
    ) -> Result<(Value, Vec<u8>), CliError> {
        let bytes = serde_json::to_vec(body)
            .map_err(|e| CliError::Invalid(format!("encoding the request body: {e}")))?;
        let mut nonce = [0u8; 16];
        getrandom::fill(&mut nonce).map_err(|e| CliError::Invalid(format!("OS RNG: {e}")))?;
        let auth = RequestAuth::sign(
            key,
            &self.chain_id,
            "POST",
            path,
            &bytes,
            Timestamp(now_ms()?),
            nonce,
        );
        let mut req = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(bytes.clone());
        for (h, v) in auth.headers() {
            req = req.header(h, v);
        }
        let r = req.send().map_err(|e| send_failed(&self.base, e))?;
        self.answer(r).map(|(_, v)| (v, bytes))
    }

    /// A GET signed by `key`.
    pub fn signed_get(&self, key: &Keypair, path: &str) -> Result<Value, CliError> {
        let r = self
            .signed(key, path)?
            .send()
            .map_err(|e| send_failed(&self.base, e))?;
        self.answer(r).map(|(_, v)| v)
    }

    /// A signed GET returning the raw body (the export stream).
    pub fn signed_get_bytes(&self, key: &Keypair, path: &str) -> Result<Vec<u8>, CliError> {
        let r = self
            .signed(key, path)?
            .send()
            .map_err(|e| send_failed(&self.base, e))?;
        if !r.status().is_success() {
            return self.answer(r).map(|_| Vec::new());
        }
        Ok(r.bytes().map_err(|e| unreachable(&self.base, e))?.to_vec())
    }

    /// Signs `payload` as `key` with its next sequence number.
    pub fn sign(&self, key: &Keypair, payload: EventPayload) -> Result<SignedEvent, CliError> {
        let v = self.signed_get(key, &format!("/v1/keys/{}/sequence", key.public()))?;
        let seq = v["next_seq"]
            .as_u64()
            .ok_or_else(|| CliError::Invalid("the node gave no sequence number".into()))?;
        let deadline = Timestamp(now_ms()? + EVENT_TTL_MS);
        Ok(Event::new(self.chain_id, key.public(), seq, deadline, payload).sign(key))
    }

    /// Submits a signed event; returns its id once the node accepted it as pending.
    pub fn submit(&self, ev: &SignedEvent) -> Result<EventId, CliError> {
        let r = self
            .http
            .post(format!("{}/v1/events", self.base))
            .json(&json!({"event": hex::encode(ev.to_bytes())}))
            .send()
            .map_err(|e| send_failed(&self.base, e))?;
        self.answer(r)?;
        Ok(ev.id())
    }

    /// Waits (up to `timeout`) until the event is final; returns the node's answer with the
    /// receipt. Reads it as `key` (the author may always read its own events).
    pub fn wait_final(
        &self,
        key: &Keypair,
        id: &EventId,
        timeout: Duration,
    ) -> Result<Value, CliError> {
        let end = Instant::now() + timeout;
        loop {
            match self.signed_get(key, &format!("/v1/events/{id}")) {
                Ok(v) => return Ok(v),
                Err(CliError::Node { status: 404, .. }) if Instant::now() < end => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(CliError::Node { status: 404, .. }) => {
                    return Err(CliError::Invalid(format!(
                        "event {id} was not final within {} s; it may still be committed",
                        timeout.as_secs()
                    )));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Submits an access or break-glass request and waits for its decision and receipt.
    pub fn authorise(&self, ev: &SignedEvent, timeout: Duration) -> Result<Value, CliError> {
        let r = self
            .http
            .post(format!("{}/v1/access", self.base))
            .json(&json!({
                "event": hex::encode(ev.to_bytes()),
                "timeout_ms": u64::try_from(timeout.as_millis()).unwrap_or(60_000),
            }))
            .send()
            .map_err(|e| send_failed(&self.base, e))?;
        self.answer(r).map(|(_, v)| v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_address_without_a_scheme_is_taken_as_http() {
        assert_eq!(base_url("127.0.0.1:7600").unwrap(), "http://127.0.0.1:7600");
        assert_eq!(
            base_url("localhost:7600/").unwrap(),
            "http://localhost:7600"
        );
        assert_eq!(
            base_url("https://node.example:443").unwrap(),
            "https://node.example:443"
        );
    }

    #[test]
    fn a_node_address_that_is_not_http_is_refused_naming_it() {
        for bad in [
            "ftp://127.0.0.1:7600",
            "http://",
            "127.0.0.1:notaport",
            "http://h:1/?x=1",
        ] {
            let e = base_url(bad).unwrap_err();
            assert_eq!(e.exit_code(), crate::exit::INVALID_INPUT, "{bad}");
            assert!(e.to_string().contains(&format!("{bad:?}")), "{e}");
            assert!(e.to_string().contains("TWINCTL_NODE"), "{e}");
        }
    }
}
