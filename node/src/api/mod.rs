//! The HTTP/JSON API (documented in docs/openapi.yaml). One module per resource.
//!
//! Every error is a 4xx/5xx with `{"error": {"code": "...", "message": "..."}}` naming the
//! problem; a refused request changes nothing. Limits: request body size, concurrent requests,
//! submissions per request, waiting time.

mod access;
mod auth;
mod blocks;
mod events;
mod governance;
mod health;
mod history;
mod patients;
mod reads;
pub mod tls;
mod twins;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tokio::sync::Semaphore;

pub(crate) use auth::authenticate;
pub use auth::{
    FAIR_SHARE, MAX_NONCES, NonceCache, RETENTION_MS, WINDOW_MS, is_known_key, nonce_quota,
};

use crate::chain::Chain;
use crate::metrics::RouteLabel;

/// Largest request body: a batch of events (1,000 of the hard maximum event size would not fit;
/// the chain's event limit keeps real batches far smaller).
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;
/// Most events in one batch submission.
pub const MAX_BATCH: usize = 1000;
/// Most requests handled at once; more get 503.
pub const MAX_CONCURRENT: usize = 1024;
/// Longest an authorise-access request waits for its decision.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

/// Default signed requests a second per known key (bursts of twice that).
pub const DEFAULT_RATE_PER_KEY: u32 = 20;

/// Shared state of the API handlers.
#[derive(Debug)]
pub struct Api {
    /// The ledger.
    pub chain: Arc<Chain>,
    /// Seen request nonces of known keys (replay protection), a quota per key.
    pub nonces: NonceCache,
    /// Request slots.
    pub slots: Arc<Semaphore>,
    /// Per-client-address request rate limit (every request, before authentication).
    pub rate: RateLimiter,
    /// Per-key rate limit of signed requests (after authentication).
    pub key_rate: RateLimiter<twinledger_core::PublicKey>,
    /// Peers whose forwarding headers name the client address.
    pub trusted_proxies: Vec<IpNet>,
    /// The key custodian, in custodian mode.
    pub custodian: Option<Arc<crate::custodian::Custodian>>,
}

impl Api {
    /// The API state for `chain` with `options`.
    pub fn new(chain: Arc<Chain>, options: &crate::ApiOptions) -> Self {
        Self {
            chain,
            nonces: NonceCache::new(nonce_quota(options.rate_limit_per_key)),
            slots: Arc::new(Semaphore::new(MAX_CONCURRENT)),
            rate: RateLimiter::new(options.rate_limit_per_client),
            key_rate: RateLimiter::new(options.rate_limit_per_key),
            trusted_proxies: options.trusted_proxies.clone(),
            custodian: options.custodian.clone(),
        }
    }
}

/// Most clients (addresses, or keys) tracked by a rate limiter; idle ones are forgotten first.
pub const MAX_TRACKED_CLIENTS: usize = 100_000;

/// A token bucket per client (IP address, or key): `per_second` requests a second, bursts of
/// twice that.
#[derive(Debug)]
pub struct RateLimiter<K = std::net::IpAddr> {
    per_second: u32,
    buckets: std::sync::Mutex<std::collections::HashMap<K, (f64, Instant)>>,
}

impl<K: std::hash::Hash + Eq + Copy> RateLimiter<K> {
    /// `per_second` = 0 disables the limit.
    pub fn new(per_second: u32) -> Self {
        Self {
            per_second,
            buckets: Default::default(),
        }
    }

    /// Takes a token for `ip`; false if the client is over its rate.
    fn allow(&self, ip: K) -> bool {
        if self.per_second == 0 {
            return true;
        }
        let rate = f64::from(self.per_second);
        let burst = 2.0 * rate;
        let now = Instant::now();
        let mut b = self.buckets.lock().expect("rate lock");
        if b.len() >= MAX_TRACKED_CLIENTS && !b.contains_key(&ip) {
            // Forget clients whose bucket has refilled: they are idle.
            b.retain(|_, (tokens, at)| *tokens + at.elapsed().as_secs_f64() * rate < burst);
        }
        let (tokens, at) = b.entry(ip).or_insert((burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * rate).min(burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// An IP network: an address and a prefix length (`10.0.0.0/8`, `::1/128`; a bare address is
/// the network of that one address).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpNet {
    addr: std::net::IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Whether `ip` is in the network (an IPv4-mapped IPv6 address counts as its IPv4 one).
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        use std::net::IpAddr;
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

impl std::str::FromStr for IpNet {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: std::net::IpAddr = a
            .parse()
            .map_err(|_| format!("{s:?}: {a:?} is not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix =
            match p {
                None => max,
                Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(|| {
                    format!("{s:?}: prefix {p:?} is not a number from 0 to {max}")
                })?,
            };
        Ok(Self { addr, prefix })
    }
}

impl std::fmt::Display for IpNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// The client address of a request from `peer`: the peer itself, unless it is a trusted proxy;
/// then the right-most `X-Forwarded-For` entry that is not itself a trusted proxy, or else the
/// `for=` of the last `Forwarded` element, or else the peer. An untrusted peer's forwarding
/// headers are ignored (anyone can write them).
pub fn client_address(
    peer: std::net::IpAddr,
    headers: &axum::http::HeaderMap,
    trusted: &[IpNet],
) -> std::net::IpAddr {
    let is_trusted = |ip: std::net::IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let xff: Vec<std::net::IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|e| parse_forwarded_ip(e.trim()))
        .collect();
    if !xff.is_empty() {
        // Every hop right of the client is a trusted proxy; all trusted: the left-most.
        return xff
            .iter()
            .rev()
            .find(|ip| !is_trusted(**ip))
            .copied()
            .unwrap_or(xff[0]);
    }
    let fwd: Vec<std::net::IpAddr> = headers
        .get_all("forwarded")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|el| {
            el.split(';').find_map(|pair| {
                let (k, v) = pair.trim().split_once('=')?;
                k.trim()
                    .eq_ignore_ascii_case("for")
                    .then(|| parse_forwarded_ip(v.trim().trim_matches('"')))
                    .flatten()
            })
        })
        .collect();
    fwd.iter()
        .rev()
        .find(|ip| !is_trusted(**ip))
        .or(fwd.first())
        .copied()
        .unwrap_or(peer)
}

/// An address as forwarding headers write it: `1.2.3.4`, `1.2.3.4:5678`, `[::1]`, `[::1]:80`,
/// `::1`.
fn parse_forwarded_ip(s: &str) -> Option<std::net::IpAddr> {
    if let Ok(ip) = s.parse() {
        return Some(ip);
    }
    if let Some(rest) = s.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok();
    }
    s.parse::<std::net::SocketAddr>().ok().map(|a| a.ip())
}

/// Which limit refused a request (the `kind` label of the rate-limited counter).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitKind {
    /// Per client address, before authentication.
    Address,
    /// Per key, after authentication.
    Key,
}

/// What `guard` reads of an error response (a response extension): its code, and the limit
/// that refused it if any.
#[derive(Clone, Copy, Debug)]
struct ErrorInfo {
    code: &'static str,
    limited: Option<LimitKind>,
}

/// An API error: status, stable code, message naming the problem.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    limited: Option<LimitKind>,
}

impl ApiError {
    /// A new error.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            limited: None,
        }
    }
    /// Marks a 429 with the limit that refused it (counted in /metrics).
    fn rate_limited(mut self, kind: LimitKind) -> Self {
        self.limited = Some(kind);
        self
    }
    fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
    fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
    /// The stable error code.
    pub fn code(&self) -> &'static str {
        self.code
    }
    /// A 500 whose cause is logged, not answered.
    pub(crate) fn internal_error(e: impl std::fmt::Display) -> Self {
        Self::internal(e)
    }
    fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error (see the node's log)",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (
            self.status,
            axum::Json(json!({"error": {"code": self.code, "message": self.message}})),
        )
            .into_response();
        resp.extensions_mut().insert(ErrorInfo {
            code: self.code,
            limited: self.limited,
        });
        resp
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        Self::internal(e)
    }
}

/// The router.
pub fn router(api: Arc<Api>) -> Router {
    Router::new()
        .route("/health", axum::routing::get(health::health))
        .route("/ready", axum::routing::get(health::health))
        .route("/live", axum::routing::get(health::live))
        .route("/metrics", axum::routing::get(health::metrics))
        .route("/v1/events", axum::routing::post(events::submit))
        .route(
            "/v1/events/batch",
            axum::routing::post(events::submit_batch),
        )
        .route("/v1/events/{id}", axum::routing::get(events::get))
        .route("/v1/access", axum::routing::post(access::authorise))
        .route(
            "/v1/patients/{did}/consents",
            axum::routing::get(patients::consents),
        )
        .route(
            "/v1/patients/{did}/accesses",
            axum::routing::get(patients::accesses),
        )
        .route(
            "/v1/patients/{did}/history",
            axum::routing::get(history::history),
        )
        .route(
            "/v1/keys/{did}/sequence",
            axum::routing::get(events::sequence),
        )
        .route("/v1/blocks/{height}", axum::routing::get(blocks::block))
        .route("/v1/checkpoint", axum::routing::get(blocks::checkpoint))
        .route("/v1/cosignatures", axum::routing::post(blocks::cosign))
        .route("/v1/consistency", axum::routing::get(blocks::consistency))
        .route("/v1/export", axum::routing::get(blocks::export))
        .route(
            "/v1/validator-sets",
            axum::routing::get(blocks::validator_sets),
        )
        .route("/v1/reviews", axum::routing::get(blocks::reviews))
        .route("/v1/governance", axum::routing::get(governance::governance))
        .route(
            "/v1/twins/{twin}/{version}",
            axum::routing::get(twins::twin),
        )
        .route("/v1/custodian", axum::routing::get(crate::custodian::info))
        .route(
            "/v1/custodian/keys",
            axum::routing::post(crate::custodian::deposit),
        )
        .route(
            "/v1/custodian/release",
            axum::routing::post(crate::custodian::release),
        )
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .layer(middleware::from_fn_with_state(api.clone(), guard))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(api)
}

/// Rate limit per client address, concurrency limit, latency metrics and refusal counters
/// around every request.
async fn guard(State(api): State<Arc<Api>>, req: Request, next: Next) -> Response {
    let is_read = req.method() == axum::http::Method::GET;
    let resp = guarded(&api, req, next).await;
    api.chain
        .metrics()
        .nonces
        .set(i64::try_from(api.nonces.len()).unwrap_or(i64::MAX));
    if let Some(info) = resp.extensions().get::<ErrorInfo>() {
        let m = api.chain.metrics();
        if let Some(kind) = info.limited {
            m.count_rate_limited(match kind {
                LimitKind::Address => "address",
                LimitKind::Key => "key",
            });
        }
        if is_read && matches!(resp.status().as_u16(), 401 | 403 | 404 | 429) {
            m.count_read_refusal(resp.status().as_u16(), info.code);
        }
    }
    resp
}

async fn guarded(api: &Arc<Api>, req: Request, next: Next) -> Response {
    if let Some(ConnectInfo(peer)) = req.extensions().get::<ConnectInfo<std::net::SocketAddr>>() {
        let client = client_address(peer.ip(), req.headers(), &api.trusted_proxies);
        if !api.rate.allow(client) {
            return ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!(
                    "more than {} requests a second from {client}; slow down",
                    api.rate.per_second,
                ),
            )
            .rate_limited(LimitKind::Address)
            .into_response();
        }
    }
    let Ok(_permit) = api.slots.clone().try_acquire_owned() else {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            format!("more than {MAX_CONCURRENT} requests in flight; retry later"),
        )
        .into_response();
    };
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let start = Instant::now();
    let resp = next.run(req).await;
    api.chain
        .metrics()
        .api_latency
        .get_or_create(&RouteLabel {
            route,
            status: resp.status().as_u16(),
        })
        .observe(start.elapsed().as_secs_f64());
    resp
}

/// Parses a hex event id from a path.
fn parse_id(s: &str) -> Result<twinledger_core::EventId, ApiError> {
    twinledger_core::EventId::from_hex(s)
        .map_err(|e| ApiError::bad_request("malformed_id", e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderMap;
    use std::net::IpAddr;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn networks_parse_and_contain_and_bad_ones_are_named() {
        let n: IpNet = "10.0.0.0/8".parse().unwrap();
        assert!(n.contains(ip("10.200.1.2")) && !n.contains(ip("11.0.0.1")));
        assert!(
            n.contains(ip("::ffff:10.1.1.1")),
            "IPv4-mapped counts as IPv4"
        );
        let one: IpNet = "127.0.0.1".parse().unwrap();
        assert!(one.contains(ip("127.0.0.1")) && !one.contains(ip("127.0.0.2")));
        let v6: IpNet = "fd00::/8".parse().unwrap();
        assert!(v6.contains(ip("fd12::1")) && !v6.contains(ip("fe80::1")));
        let all: IpNet = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("203.0.113.9")));
        let e = "10.0.0.0/33".parse::<IpNet>().unwrap_err();
        assert!(e.contains("prefix") && e.contains("32"), "{e}");
        let e = "proxy.local".parse::<IpNet>().unwrap_err();
        assert!(e.contains("not an IP address"), "{e}");
    }

    #[test]
    fn the_client_address_comes_from_forwarding_headers_of_trusted_proxies_only() {
        let trusted: Vec<IpNet> = vec!["127.0.0.1".parse().unwrap(), "10.0.0.0/8".parse().unwrap()];
        let xff = headers(&[("x-forwarded-for", "6.6.6.6, 198.51.100.7, 10.1.2.3")]);
        // Right-most entry that is not a trusted proxy; a spoofed left part is not used.
        assert_eq!(
            client_address(ip("127.0.0.1"), &xff, &trusted),
            ip("198.51.100.7")
        );
        // From an untrusted peer the headers are ignored.
        assert_eq!(
            client_address(ip("192.0.2.1"), &xff, &trusted),
            ip("192.0.2.1")
        );
        // Every entry trusted: the left-most.
        let inner = headers(&[("x-forwarded-for", "10.9.9.9, 10.1.1.1")]);
        assert_eq!(
            client_address(ip("127.0.0.1"), &inner, &trusted),
            ip("10.9.9.9")
        );
        // Forwarded: for= (quoted IPv6 with port, several elements).
        let fwd = headers(&[(
            "forwarded",
            "for=192.0.2.60;proto=https, for=\"[2001:db8::1]:4711\";by=10.0.0.1",
        )]);
        assert_eq!(
            client_address(ip("127.0.0.1"), &fwd, &trusted),
            ip("2001:db8::1")
        );
        // No forwarding header: the peer.
        assert_eq!(
            client_address(ip("127.0.0.1"), &HeaderMap::new(), &trusted),
            ip("127.0.0.1")
        );
        // Garbage entries are skipped.
        let junk = headers(&[("x-forwarded-for", "unknown, 198.51.100.9:5000")]);
        assert_eq!(
            client_address(ip("127.0.0.1"), &junk, &trusted),
            ip("198.51.100.9")
        );
    }
}
