//! Prometheus metrics (prometheus-client, the registry libp2p's metrics use too).

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use twinledger_core::{Decision, Outcome};

/// Label of a decision.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabel {
    /// permit, deny or break_glass.
    pub outcome: &'static str,
}

/// Label of an API route.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabel {
    /// The route pattern.
    pub route: String,
    /// HTTP status class.
    pub status: u16,
}

/// Label of a refused read: its HTTP status and error code, nothing else (/metrics is public:
/// no label tells "no such record" from "not yours").
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabel {
    /// 401, 403, 404 or 429.
    pub status: u16,
    /// The error code (`unknown_key`, `bad_signature`, `not_found`, `rate_limited`, ...).
    pub code: &'static str,
}

/// Label of a rate-limited request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabel {
    /// `address` (per client address, before authentication) or `key` (per key, after).
    pub kind: &'static str,
}

/// Label of a refused custodian request: its error code.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabel {
    /// The error code (`grant_revoked`, `already_released`, ...).
    pub code: &'static str,
}

/// The node's metrics.
#[derive(Clone, Debug)]
pub struct Metrics {
    registry: Arc<Registry>,
    /// Height of the last final block.
    pub height: Gauge,
    /// Events committed (rate = events/s).
    pub events: Counter,
    /// Events waiting in the mempool.
    pub mempool: Gauge,
    /// Access decisions by outcome.
    pub decisions: Family<DecisionLabel, Counter>,
    /// API latency by route and status, seconds.
    pub api_latency: Family<RouteLabel, Histogram>,
    /// Signed events refused at admission because their author is no enrolled party that may
    /// send them (`unknown_author`): unknown keys, which never reach the chain.
    pub unknown_authors: Counter,
    /// Signed reads refused because their key is unknown to the chain (`unknown_key`).
    pub unknown_key_reads: Counter,
    /// Refused reads (GET requests answered 401, 403, 404 or 429) by status and code.
    pub read_refusals: Family<RefusalLabel, Counter>,
    /// Requests refused by a rate limit or nonce quota, by kind (`address` or `key`).
    pub rate_limited: Family<LimitLabel, Counter>,
    /// Request nonces remembered for replay protection (known keys only).
    pub nonces: Gauge,
    /// Custodian mode: data keys released (each with its committed KeyRelease).
    pub custodian_releases: Counter,
    /// Custodian mode: data keys deposited.
    pub custodian_deposits: Counter,
    /// Custodian mode: data keys erased after a committed TwinErase.
    pub custodian_erasures: Counter,
    /// Custodian mode: refused deposits and releases, by error code.
    pub custodian_refusals: Family<CodeLabel, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("twinledger");
        let height = Gauge::default();
        let events = Counter::default();
        let mempool = Gauge::default();
        let decisions = Family::<DecisionLabel, Counter>::default();
        let api_latency = Family::<RouteLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        });
        let unknown_authors = Counter::default();
        let unknown_key_reads = Counter::default();
        let read_refusals = Family::<RefusalLabel, Counter>::default();
        let rate_limited = Family::<LimitLabel, Counter>::default();
        let nonces = Gauge::default();
        let custodian_releases = Counter::default();
        let custodian_deposits = Counter::default();
        let custodian_erasures = Counter::default();
        let custodian_refusals = Family::<CodeLabel, Counter>::default();
        registry.register(
            "custodian_releases",
            "Data keys released by the custodian (each with a committed KeyRelease)",
            custodian_releases.clone(),
        );
        registry.register(
            "custodian_deposits",
            "Data keys deposited with the custodian",
            custodian_deposits.clone(),
        );
        registry.register(
            "custodian_erasures",
            "Data keys erased by the custodian after a committed TwinErase",
            custodian_erasures.clone(),
        );
        registry.register(
            "custodian_refusals",
            "Custodian deposits and releases refused, by error code",
            custodian_refusals.clone(),
        );
        registry.register("height", "Height of the last final block", height.clone());
        registry.register("events_committed", "Events committed", events.clone());
        registry.register(
            "mempool_events",
            "Events waiting in the mempool",
            mempool.clone(),
        );
        registry.register(
            "decisions",
            "Access decisions by outcome",
            decisions.clone(),
        );
        registry.register(
            "api_request_seconds",
            "API request latency",
            api_latency.clone(),
        );
        registry.register(
            "unknown_author_refusals",
            "Signed events refused at admission because their author is not enrolled",
            unknown_authors.clone(),
        );
        registry.register(
            "unknown_key_reads",
            "Signed reads refused because their key is unknown to the chain",
            unknown_key_reads.clone(),
        );
        registry.register(
            "read_refusals",
            "Reads refused (401, 403, 404, 429) by status and error code",
            read_refusals.clone(),
        );
        registry.register(
            "rate_limited_requests",
            "Requests refused by a rate limit, by kind (address or key)",
            rate_limited.clone(),
        );
        registry.register(
            "request_nonces",
            "Signed-request nonces remembered for replay protection (known keys only)",
            nonces.clone(),
        );
        Self {
            registry: Arc::new(registry),
            height,
            events,
            mempool,
            decisions,
            api_latency,
            unknown_authors,
            unknown_key_reads,
            read_refusals,
            rate_limited,
            nonces,
            custodian_releases,
            custodian_deposits,
            custodian_erasures,
            custodian_refusals,
        }
    }

    /// Counts a refused custodian request by its error code.
    pub fn count_custodian_refusal(&self, code: &'static str) {
        self.custodian_refusals
            .get_or_create(&CodeLabel { code })
            .inc();
    }

    /// Counts a refused read by status and code (and an unknown key's on its own counter).
    pub fn count_read_refusal(&self, status: u16, code: &'static str) {
        if code == "unknown_key" {
            self.unknown_key_reads.inc();
        }
        self.read_refusals
            .get_or_create(&RefusalLabel { status, code })
            .inc();
    }

    /// Counts a rate-limited request by kind (`address` or `key`).
    pub fn count_rate_limited(&self, kind: &'static str) {
        self.rate_limited.get_or_create(&LimitLabel { kind }).inc();
    }

    /// Counts an outcome if it is a decision.
    pub fn count_outcome(&self, o: &Outcome) {
        let outcome = match o {
            Outcome::Applied => return,
            Outcome::Access(Decision::Permit { .. }) => "permit",
            Outcome::Access(Decision::Deny { .. }) => "deny",
            Outcome::Access(Decision::BreakGlass) => "break_glass",
        };
        self.decisions
            .get_or_create(&DecisionLabel { outcome })
            .inc();
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
