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
        Self {
            registry: Arc::new(registry),
            height,
            events,
            mempool,
            decisions,
            api_latency,
            unknown_authors,
        }
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
