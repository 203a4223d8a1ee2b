//! The peer-to-peer network (libp2p 0.57): TCP + noise + yamux, identify, gossipsub for
//! consensus messages and submitted events, request-response for block sync, and an allow
//! list so that only peers named in the genesis file can hold a connection.
//!
//! **Permissioning.** The libp2p peer id of a validator is derived from its consensus key, and
//! observers are listed by peer id in the genesis file. `allow_block_list` refuses every
//! connection from another peer id as soon as the noise handshake has authenticated it, before
//! any application protocol runs; the refusal is logged with the peer id.
//!
//! **Limits.** Peers: only the genesis-listed ones (at most 256 validators plus observers).
//! Gossip messages are at most one block's worth of bytes; sync responses at most
//! [`SYNC_MAX_BLOCKS`] blocks and [`SYNC_MAX_BYTES`]; peers that send what does not decode are
//! penalised by gossipsub (`Reject`) and logged; a peer that serves a block that does not verify
//! is disconnected (by the replica, which checks it).

use std::collections::{HashMap, HashSet};
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{AsyncReadExt as _, AsyncWriteExt as _, StreamExt as _};
use libp2p::allow_block_list::{self, AllowedPeers};
use libp2p::gossipsub::{self, IdentTopic, MessageAcceptance, MessageAuthenticity};
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, StreamProtocol, Swarm, identify, noise, ping, tcp, yamux};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};
use twinledger_core::block::MAX_BLOCK_BYTES;
use twinledger_core::{Block, ChainId, CommitCertificate, Keypair, SignedEvent, codec};

use crate::chain::Chain;
use crate::consensus::Msg;

/// Most events in one gossiped batch.
pub const EVENT_BATCH: usize = 1024;
/// Most bytes of events in one gossiped batch.
pub const EVENT_BATCH_BYTES: usize = 1024 * 1024;
/// Most blocks in one sync response.
pub const SYNC_MAX_BLOCKS: u64 = 32;
/// Most bytes of blocks in one sync response (a response always holds at least one block).
pub const SYNC_MAX_BYTES: usize = 16 * 1024 * 1024;
/// Consensus messages one peer may hand this node per second, on average (bursts: twice that).
/// Honest peers send a few per height and round, plus what they forward.
pub const PEER_MSGS_PER_SEC: u32 = 500;
/// Consensus bytes one peer may hand this node per second, on average (bursts: two of the
/// largest messages).
pub const PEER_BYTES_PER_SEC: u32 = 16 * 1024 * 1024;

/// A token bucket per peer over consensus messages and their bytes: what a peer sends beyond
/// it is neither handed to the engine nor forwarded (one flooding peer cannot fill the engine's
/// input queue for the others).
#[derive(Clone, Copy, Debug)]
pub struct PeerBudget {
    msgs: f64,
    bytes: f64,
    burst_bytes: f64,
    at: Instant,
}

impl PeerBudget {
    /// A full bucket at `now`; `max_message` bytes is the largest message.
    pub fn new(now: Instant, max_message: usize) -> Self {
        let burst_bytes = (2 * max_message) as f64;
        Self {
            msgs: 2.0 * f64::from(PEER_MSGS_PER_SEC),
            bytes: burst_bytes,
            burst_bytes,
            at: now,
        }
    }

    /// Takes one message of `size` bytes at `now`, if the budget allows it.
    pub fn take(&mut self, now: Instant, size: usize) -> bool {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        let rate = f64::from(PEER_MSGS_PER_SEC);
        self.msgs = (self.msgs + dt * rate).min(2.0 * rate);
        self.bytes = (self.bytes + dt * f64::from(PEER_BYTES_PER_SEC)).min(self.burst_bytes);
        let size = size as f64;
        if self.msgs < 1.0 || self.bytes < size {
            return false;
        }
        self.msgs -= 1.0;
        self.bytes -= size;
        true
    }
}

/// How often each connection is pinged.
pub const PING_INTERVAL: Duration = Duration::from_secs(3);
/// A ping not answered within this long closes the connection (then it is redialled).
pub const PING_TIMEOUT: Duration = Duration::from_secs(5);

/// What the replica asks the network to do.
#[derive(Debug)]
pub enum ToNet {
    /// Gossip a consensus message.
    Consensus(Msg),
    /// Ask `peer` for committed blocks from `from`.
    Sync {
        /// Whom.
        peer: PeerId,
        /// First height wanted.
        from: u64,
    },
    /// Disconnect a misbehaving peer, logging why.
    Disconnect(PeerId, String),
    /// Dial an address (with `/p2p/<peer id>`).
    Dial(Multiaddr),
    /// The allow-list changed with the committed state (PROTOCOL.md §7.1): admit exactly these
    /// peers from now on; peers no longer listed are disconnected at once.
    Allow(std::collections::BTreeSet<PeerId>),
}

/// What the network hands the replica.
#[derive(Debug)]
pub enum FromNet {
    /// A consensus message (decoded; not yet verified).
    Consensus {
        /// The message.
        msg: Msg,
        /// The peer that forwarded it.
        from: PeerId,
    },
    /// Blocks returned by a sync request (decoded; not yet verified).
    Synced {
        /// Who served them.
        peer: PeerId,
        /// The blocks, in height order.
        blocks: Vec<(Block, CommitCertificate)>,
    },
    /// A sync request failed or came back empty.
    SyncFailed(PeerId),
    /// Stop the replica.
    Stop,
}

/// Block sync request.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SyncRequest {
    /// First height wanted.
    pub from: u64,
}

/// Block sync response: committed blocks from the requested height, in order.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SyncResponse {
    /// (block, certificate), heights `from..`.
    pub blocks: Vec<(Block, CommitCertificate)>,
}

/// Length-prefixed postcard codec for the sync protocol.
#[derive(Clone, Copy, Debug, Default)]
pub struct SyncCodec;

async fn read_frame<T: futures::AsyncRead + Unpin + Send>(
    io: &mut T,
    max: usize,
) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let n = u32::from_be_bytes(len) as usize;
    if n > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("sync frame of {n} bytes exceeds the limit of {max}"),
        ));
    }
    let mut buf = vec![0u8; n];
    io.read_exact(&mut buf).await?;
    Ok(buf)
}

async fn write_frame<T: futures::AsyncWrite + Unpin + Send>(
    io: &mut T,
    bytes: &[u8],
) -> io::Result<()> {
    let n = u32::try_from(bytes.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
    io.write_all(&n.to_be_bytes()).await?;
    io.write_all(bytes).await?;
    io.close().await
}

fn bad(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

const SYNC_RESPONSE_MAX: usize = SYNC_MAX_BYTES + MAX_BLOCK_BYTES + 1024;

impl request_response::Codec for SyncCodec {
    type Protocol = StreamProtocol;
    type Request = SyncRequest;
    type Response = SyncResponse;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<SyncRequest>
    where
        T: futures::AsyncRead + Unpin + Send,
    {
        let b = read_frame(io, 64).await?;
        codec::decode("sync request", &b, 64).map_err(bad)
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<SyncResponse>
    where
        T: futures::AsyncRead + Unpin + Send,
    {
        let b = read_frame(io, SYNC_RESPONSE_MAX).await?;
        codec::decode("sync response", &b, SYNC_RESPONSE_MAX).map_err(bad)
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: SyncRequest,
    ) -> io::Result<()>
    where
        T: futures::AsyncWrite + Unpin + Send,
    {
        write_frame(io, &codec::encode(&req)).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: SyncResponse,
    ) -> io::Result<()>
    where
        T: futures::AsyncWrite + Unpin + Send,
    {
        write_frame(io, &codec::encode(&res)).await
    }
}

/// The libp2p behaviours.
#[derive(NetworkBehaviour)]
#[allow(missing_debug_implementations)] // libp2p's behaviours do not all implement Debug
pub struct Behaviour {
    allow: allow_block_list::Behaviour<AllowedPeers>,
    /// Liveness of every connection: one that misses [`PING_TIMEOUT`] is closed, so the redial
    /// loop reconnects as soon as a partition heals instead of waiting out TCP's retransmission
    /// backoff on a dead connection (about 50 s after a 60 s partition, WAN bed).
    ping: ping::Behaviour,
    identify: identify::Behaviour,
    gossipsub: gossipsub::Behaviour,
    sync: request_response::Behaviour<SyncCodec>,
}

/// Network settings.
#[derive(Clone, Debug)]
pub struct NetConfig {
    /// Where to listen (e.g. `/ip4/127.0.0.1/tcp/0`).
    pub listen: Multiaddr,
    /// Peers to dial and keep dialling (each with `/p2p/<peer id>`).
    pub dial: Vec<Multiaddr>,
    /// Every peer id allowed to connect at start (PROTOCOL.md §7.1, minus us); the replica
    /// replaces it as blocks commit ([`ToNet::Allow`]).
    pub allowed: Vec<PeerId>,
    /// The chain (topics are per chain).
    pub chain_id: ChainId,
    /// Largest gossip message (a block with its proposal).
    pub max_message_bytes: usize,
}

/// The libp2p identity of a consensus key (its peer id is `peer_id_from_ed25519` of the key).
pub fn identity(key: &Keypair) -> libp2p::identity::Keypair {
    libp2p::identity::Keypair::ed25519_from_bytes(key.secret_bytes())
        .expect("an ed25519 secret is 32 bytes")
}

/// The peer id of a consensus (or observer) public key.
pub fn peer_id(key: &twinledger_core::PublicKey) -> PeerId {
    let pk = libp2p::identity::ed25519::PublicKey::try_from_bytes(key.as_bytes())
        .expect("a valid ed25519 key");
    PeerId::from_public_key(&libp2p::identity::PublicKey::from(pk))
}

fn topics(chain_id: &ChainId) -> (IdentTopic, IdentTopic) {
    (
        IdentTopic::new(format!("/twinledger/{chain_id}/consensus/1")),
        IdentTopic::new(format!("/twinledger/{chain_id}/events/1")),
    )
}

/// Builds the swarm.
pub fn build_swarm(key: &Keypair, cfg: &NetConfig) -> anyhow::Result<Swarm<Behaviour>> {
    let id = identity(key);
    let mut allow = allow_block_list::Behaviour::<AllowedPeers>::default();
    for p in &cfg.allowed {
        allow.allow_peer(*p);
    }
    let gossip_cfg = gossipsub::ConfigBuilder::default()
        .max_transmit_size(cfg.max_message_bytes)
        // Every payload is signed at our layer (votes, proposals, events) and every connection
        // is authenticated (noise) and allow-listed: gossipsub's own per-message signatures
        // would only add a signature and three verifications per message on a 2-core machine.
        .validation_mode(gossipsub::ValidationMode::None)
        .validate_messages()
        .heartbeat_interval(Duration::from_millis(500))
        // Small, fixed networks: every peer in the mesh.
        .mesh_n_low(1)
        .mesh_outbound_min(0)
        .mesh_n(8)
        .mesh_n_high(16)
        // Unsigned gossip carries no source or sequence number: ids are content hashes.
        // Consensus messages are prefixed with a per-node publish counter so that a deliberate
        // rebroadcast (a stalled height) is not swallowed as a duplicate.
        .message_id_fn(|m: &gossipsub::Message| {
            gossipsub::MessageId::from(blake3::hash(&m.data).as_bytes().to_vec())
        })
        .build()
        .map_err(|e| anyhow::anyhow!("gossipsub config: {e}"))?;
    let chain_id = cfg.chain_id;
    let behaviour = move |k: &libp2p::identity::Keypair| -> Result<Behaviour, Box<dyn std::error::Error + Send + Sync>> {
        let mut gossipsub =
            gossipsub::Behaviour::new(MessageAuthenticity::Signed(k.clone()), gossip_cfg)?;
        let (c, e) = topics(&chain_id);
        gossipsub.subscribe(&c)?;
        gossipsub.subscribe(&e)?;
        Ok(Behaviour {
            allow,
            ping: ping::Behaviour::new(
                ping::Config::new()
                    .with_interval(PING_INTERVAL)
                    .with_timeout(PING_TIMEOUT),
            ),
            identify: identify::Behaviour::new(identify::Config::new(
                "/twinledger/1".into(),
                k.public(),
            )),
            gossipsub,
            sync: request_response::Behaviour::new(
                [(
                    StreamProtocol::new("/twinledger/sync/1"),
                    ProtocolSupport::Full,
                )],
                request_response::Config::default().with_request_timeout(Duration::from_secs(30)),
            ),
        })
    };
    let tcp = || {
        libp2p::SwarmBuilder::with_existing_identity(id.clone())
            .with_tokio()
            .with_tcp(
                tcp::Config::default().nodelay(true),
                noise::Config::new,
                yamux::Config::default,
            )
    };
    // DNS names (`/dns4`, `/dns6`, `/dns` in the genesis or a dial address) are resolved with
    // the system's resolver configuration (resolv.conf and the hosts file; `localhost` is
    // loopback), as other programs on the host resolve them. A host without a readable
    // configuration still runs: it dials IP addresses only, and says so.
    let swarm = match tcp()?.with_dns() {
        Ok(dns) => dns
            .with_behaviour(behaviour)?
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(3600)))
            .build(),
        Err(e) => {
            tracing::warn!(error = %e, "no system DNS configuration: /dns4, /dns6 and /dns peer addresses cannot be dialled");
            tcp()?
                .with_behaviour(behaviour)?
                .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(3600)))
                .build()
        }
    };
    Ok(swarm)
}

/// Runs the network until `shutdown`: gossips what the replica sends, hands it consensus
/// messages and synced blocks, serves sync requests from the chain, and admits gossiped events
/// to the mempool (after checking their signatures). `listening` gets the bound address.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    mut swarm: Swarm<Behaviour>,
    cfg: NetConfig,
    chain: Arc<Chain>,
    mut to_net: mpsc::Receiver<ToNet>,
    from_net: std::sync::mpsc::SyncSender<FromNet>,
    mut events: mpsc::Receiver<Vec<u8>>,
    listening: oneshot::Sender<Multiaddr>,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    // A name may resolve to addresses this host cannot bind (an IPv6 loopback with IPv6 off):
    // listen on those it can, and fail only if there is none.
    let mut bound = 0;
    let mut last_error = None;
    for addr in listen_addrs(&cfg.listen).await? {
        match swarm.listen_on(addr.clone()) {
            Ok(_) => bound += 1,
            Err(e) => {
                tracing::warn!(%addr, error = %e, listen = %cfg.listen, "cannot listen on an address of the listen name");
                last_error = Some(e);
            }
        }
    }
    if let (0, Some(e)) = (bound, last_error) {
        return Err(anyhow::Error::from(e).context(format!("listening on {}", cfg.listen)));
    }
    let (consensus_topic, events_topic) = topics(&cfg.chain_id);
    let mut listening = Some(listening);
    let mut dial: Vec<Multiaddr> = cfg.dial.clone();
    for a in &dial {
        let _ = swarm.dial(a.clone());
    }
    let mut allowed: HashSet<PeerId> = cfg.allowed.iter().copied().collect();
    let mut redial = tokio::time::interval(Duration::from_secs(2));
    redial.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let max_event = chain.max_event_bytes();
    let mut published: u64 = 0;
    let mut budgets: HashMap<PeerId, (PeerBudget, u64)> = HashMap::new();
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            _ = redial.tick() => {
                for a in &dial {
                    let peer = peer_of(a);
                    let connected = peer.is_some_and(|p| swarm.is_connected(&p));
                    // Only listed peers are dialled (a removed validator's address stays in the
                    // genesis file).
                    let listed = peer.is_none_or(|p| allowed.contains(&p));
                    if !connected && listed {
                        let _ = swarm.dial(a.clone());
                    }
                }
            }
            out = to_net.recv() => match out {
                None => break,
                Some(ToNet::Consensus(msg)) => {
                    published += 1;
                    let mut bytes = published.to_be_bytes().to_vec();
                    bytes.extend(codec::encode(&msg));
                    if let Err(e) = swarm.behaviour_mut().gossipsub.publish(consensus_topic.clone(), bytes) {
                        tracing::debug!(error = %e, "consensus gossip not sent");
                    }
                }
                Some(ToNet::Sync { peer, from }) => {
                    swarm.behaviour_mut().sync.send_request(&peer, SyncRequest { from });
                }
                Some(ToNet::Disconnect(peer, why)) => {
                    tracing::warn!(%peer, %why, "disconnecting peer");
                    let _ = swarm.disconnect_peer_id(peer);
                }
                Some(ToNet::Allow(next)) => {
                    for p in allowed.iter().filter(|p| !next.contains(p)) {
                        tracing::info!(peer = %p, "peer no longer allowed by the committed state; disconnecting");
                        swarm.behaviour_mut().allow.disallow_peer(*p);
                    }
                    for p in next.iter().filter(|p| !allowed.contains(p)) {
                        tracing::info!(peer = %p, "peer allowed by the committed state");
                        swarm.behaviour_mut().allow.allow_peer(*p);
                    }
                    allowed = next.into_iter().collect();
                }
                Some(ToNet::Dial(addr)) => {
                    let _ = swarm.dial(addr.clone());
                    dial.push(addr);
                }
            },
            ev = events.recv() => {
                // Events travel in batches: one gossip message per burst of submissions.
                if let Some(first) = ev {
                    let mut batch = vec![first];
                    let mut size = batch[0].len();
                    while batch.len() < EVENT_BATCH && size < EVENT_BATCH_BYTES {
                        match events.try_recv() {
                            Ok(b) => {
                                size += b.len();
                                batch.push(b);
                            }
                            Err(_) => break,
                        }
                    }
                    if let Err(e) = swarm
                        .behaviour_mut()
                        .gossipsub
                        .publish(events_topic.clone(), codec::encode(&batch))
                    {
                        tracing::debug!(error = %e, "event gossip not sent");
                    }
                }
            }
            ev = swarm.select_next_some() => match ev {
                SwarmEvent::NewListenAddr { address, .. } => {
                    tracing::info!(%address, peer = %swarm.local_peer_id(), "p2p listening");
                    if let Some(tx) = listening.take() {
                        let _ = tx.send(address);
                    }
                }
                SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                    tracing::info!(peer = %peer_id, "peer connected");
                }
                SwarmEvent::ConnectionClosed { peer_id, cause, .. } => {
                    tracing::info!(peer = %peer_id, cause = ?cause, "peer disconnected");
                }
                SwarmEvent::IncomingConnectionError { send_back_addr, peer_id, error, .. } => {
                    if peer_id.is_some_and(|p| !allowed.contains(&p)) || error.to_string().contains("denied") {
                        tracing::warn!(peer = ?peer_id, addr = %send_back_addr, %error, "refused connection from a peer the committed state does not allow");
                    } else {
                        tracing::debug!(addr = %send_back_addr, %error, "incoming connection failed");
                    }
                }
                SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                    tracing::debug!(peer = ?peer_id, %error, "dial failed");
                }
                SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                    propagation_source, message_id, message,
                })) => {
                    let now = Instant::now();
                    let (budget, dropped) = budgets
                        .entry(propagation_source)
                        .or_insert_with(|| (PeerBudget::new(now, cfg.max_message_bytes), 0));
                    let within = message.topic != consensus_topic.hash()
                        || budget.take(now, message.data.len());
                    if !within {
                        *dropped += 1;
                        if dropped.is_power_of_two() {
                            tracing::warn!(peer = %propagation_source, dropped = *dropped, "peer over its consensus message budget; messages dropped");
                        }
                    }
                    let verdict = if !within {
                        MessageAcceptance::Ignore
                    } else if message.topic == consensus_topic.hash() {
                        let body = message.data.get(8..).unwrap_or_default();
                        match codec::decode::<Msg>("consensus message", body, cfg.max_message_bytes) {
                            Ok(msg) => {
                                let verdict = check_consensus(&chain, &msg);
                                if verdict == MessageAcceptance::Reject {
                                    tracing::warn!(peer = %propagation_source, height = msg.height(), "consensus message that does not verify; not forwarded");
                                } else if from_net.try_send(FromNet::Consensus { msg, from: propagation_source }).is_err() {
                                    tracing::warn!(peer = %propagation_source, "consensus input queue full; message dropped (rebroadcast recovers it)");
                                }
                                verdict
                            }
                            Err(e) => {
                                tracing::warn!(peer = %propagation_source, error = %e, "malformed consensus message");
                                MessageAcceptance::Reject
                            }
                        }
                    } else if message.topic == events_topic.hash() {
                        admit_events(&chain, &message.data, max_event, propagation_source)
                    } else {
                        MessageAcceptance::Ignore
                    };
                    let _ = swarm.behaviour_mut().gossipsub.report_message_validation_result(
                        &message_id, &propagation_source, verdict,
                    );
                }
                SwarmEvent::Behaviour(BehaviourEvent::Sync(request_response::Event::Message { peer, message, .. })) => match message {
                    request_response::Message::Request { request, channel, .. } => {
                        let blocks = serve_sync(&chain, request.from);
                        let _ = swarm.behaviour_mut().sync.send_response(channel, SyncResponse { blocks });
                    }
                    request_response::Message::Response { response, .. } => {
                        let msg = if response.blocks.is_empty() {
                            FromNet::SyncFailed(peer)
                        } else {
                            FromNet::Synced { peer, blocks: response.blocks }
                        };
                        if from_net.try_send(msg).is_err() {
                            // Asked again after the sync timeout.
                            tracing::warn!(%peer, "consensus input queue full; sync response dropped");
                        }
                    }
                },
                SwarmEvent::Behaviour(BehaviourEvent::Ping(ping::Event { peer, connection, result: Err(error), .. })) => {
                    tracing::info!(%peer, %error, "peer does not answer pings; closing the connection (it is redialled)");
                    swarm.close_connection(connection);
                }
                SwarmEvent::Behaviour(BehaviourEvent::Sync(request_response::Event::OutboundFailure { peer, error, .. })) => {
                    tracing::info!(%peer, %error, "sync request failed");
                    let _ = from_net.try_send(FromNet::SyncFailed(peer));
                }
                _ => {}
            }
        }
    }
    tracing::info!("p2p stopped");
    Ok(())
}

/// What gossipsub does with a consensus message before the engine sees it: only messages that
/// verify are forwarded to other peers (`Accept`); messages this node cannot judge yet or that
/// concern only itself (an unsigned `Status`, an old or far-future height, a decision push) are
/// handed to the engine but not forwarded (`Ignore`); messages that fail their signature,
/// membership or body check are dropped (`Reject`). The engine verifies again: this check is
/// about what this node passes on, not about what it accepts.
fn check_consensus(chain: &Chain, msg: &Msg) -> MessageAcceptance {
    let st = chain.state();
    let tip = st.height();
    let h = msg.height();
    // Sets are fixed by the committed state up to two heights ahead.
    let known = h > tip && h <= tip + 2;
    let set = st.validators_for(h.clamp(tip + 1, tip + 2));
    let id = chain.chain_id();
    match msg {
        Msg::Status { .. } => MessageAcceptance::Ignore,
        // A decision at or below our tip concerns a set this check does not hold: the engine
        // judges it. Above, its certificate and body must verify.
        Msg::Decision { .. } if h <= tip => MessageAcceptance::Ignore,
        Msg::Decision { block, certificate } => {
            if certificate.verify(&block.header.checkpoint(), set).is_ok()
                && block.check_body().is_ok()
            {
                MessageAcceptance::Ignore
            } else {
                MessageAcceptance::Reject
            }
        }
        _ if !known => MessageAcceptance::Ignore,
        Msg::Vote(v) => match v.verify(&id, set) {
            Ok(()) => MessageAcceptance::Accept,
            Err(_) => MessageAcceptance::Reject,
        },
        Msg::Proposal { proposal, block } => {
            let ok = proposal.verify(&id, set).is_ok()
                && block.header.checkpoint() == proposal.proposal.value
                && block.check_body().is_ok();
            if ok {
                MessageAcceptance::Accept
            } else {
                MessageAcceptance::Reject
            }
        }
    }
}

/// A listen address that names a host this node cannot listen on.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// The name did not resolve.
    #[error("cannot listen on {addr}: {name:?} does not resolve: {source}")]
    Unresolved {
        /// The listen address.
        addr: Multiaddr,
        /// The DNS name in it.
        name: String,
        /// What the resolver said.
        source: io::Error,
    },
    /// The name resolved, but to no address of the family the address asks for.
    #[error("cannot listen on {addr}: {name:?} has no {family} address")]
    NoAddress {
        /// The listen address.
        addr: Multiaddr,
        /// The DNS name in it.
        name: String,
        /// `IPv4` (`/dns4`), `IPv6` (`/dns6`) or `IP` (`/dns`).
        family: &'static str,
    },
}

/// The addresses to listen on for `addr`. A socket binds to an IP address, not a name: a
/// `/dns4|dns6|dns/<name>/tcp/<port>` listen address (a validator's own genesis address, as
/// the others dial it: a compose service name, `localhost`) listens on every address the name
/// resolves to on this host (IPv4 only for `/dns4`, IPv6 only for `/dns6`), with the same
/// port. Other addresses are returned unchanged.
pub async fn listen_addrs(addr: &Multiaddr) -> Result<Vec<Multiaddr>, ListenError> {
    use libp2p::multiaddr::Protocol;
    let mut parts = addr.iter();
    let (name, v4, v6) = match parts.next() {
        Some(Protocol::Dns4(n)) => (n.to_string(), true, false),
        Some(Protocol::Dns6(n)) => (n.to_string(), false, true),
        Some(Protocol::Dns(n)) => (n.to_string(), true, true),
        _ => return Ok(vec![addr.clone()]),
    };
    let rest: Vec<Protocol<'_>> = parts.collect();
    let port = rest
        .iter()
        .find_map(|p| match p {
            Protocol::Tcp(port) => Some(*port),
            _ => None,
        })
        .unwrap_or(0);
    let resolved = tokio::net::lookup_host((name.as_str(), port))
        .await
        .map_err(|source| ListenError::Unresolved {
            addr: addr.clone(),
            name: name.clone(),
            source,
        })?;
    let mut out: Vec<Multiaddr> = Vec::new();
    for ip in resolved.map(|a| a.ip()) {
        let first = match ip {
            std::net::IpAddr::V4(ip) if v4 => Protocol::Ip4(ip),
            std::net::IpAddr::V6(ip) if v6 => Protocol::Ip6(ip),
            _ => continue,
        };
        let a: Multiaddr = std::iter::once(first).chain(rest.iter().cloned()).collect();
        if !out.contains(&a) {
            out.push(a);
        }
    }
    if out.is_empty() {
        return Err(ListenError::NoAddress {
            addr: addr.clone(),
            name,
            family: match (v4, v6) {
                (true, false) => "IPv4",
                (false, true) => "IPv6",
                _ => "IP",
            },
        });
    }
    Ok(out)
}

fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    addr.iter().find_map(|p| match p {
        libp2p::multiaddr::Protocol::P2p(id) => Some(id),
        _ => None,
    })
}

/// A gossiped batch of events: each decoded with the chain's size limit, signature checked,
/// then admitted like an API submission. Bad bytes or a bad signature reject the whole message
/// (the peer is penalised); events refused by the rules on this node's state are skipped.
fn admit_events(chain: &Chain, bytes: &[u8], max: usize, from: PeerId) -> MessageAcceptance {
    let batch: Vec<Vec<u8>> =
        match codec::decode("event batch", bytes, EVENT_BATCH_BYTES + 64 * 1024) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(peer = %from, error = %e, "malformed gossiped event batch");
                return MessageAcceptance::Reject;
            }
        };
    if batch.len() > EVENT_BATCH {
        tracing::warn!(peer = %from, n = batch.len(), "oversized gossiped event batch");
        return MessageAcceptance::Reject;
    }
    let mut events = Vec::with_capacity(batch.len());
    for b in batch {
        match SignedEvent::from_bytes(&b, max) {
            Ok(ev) if ev.event.chain_id == chain.chain_id() => events.push(ev),
            Ok(_) => {
                tracing::warn!(peer = %from, "gossiped event of another chain");
                return MessageAcceptance::Reject;
            }
            Err(e) => {
                tracing::warn!(peer = %from, error = %e, "malformed gossiped event");
                return MessageAcceptance::Reject;
            }
        }
    }
    // Events this node already holds (pending or final) were verified when they were admitted:
    // only the others are checked, all in one batch.
    let fresh: Vec<&SignedEvent> = events.iter().filter(|ev| !chain.knows(ev)).collect();
    if let Some(i) = crate::verify::first_bad(&fresh) {
        tracing::warn!(peer = %from, event = %fresh[i].id(), "gossiped event with a bad signature");
        return MessageAcceptance::Reject;
    }
    let mut admitted = 0;
    for ev in events {
        // Already pending, already final, or refused on this node's state (states differ by
        // a block at most): skipped, not punished.
        if chain
            .submit_verified_at(ev, None, crate::chain::now())
            .is_ok()
        {
            admitted += 1;
        }
    }
    if admitted > 0 {
        MessageAcceptance::Accept
    } else {
        MessageAcceptance::Ignore
    }
}

/// Committed blocks from `from`, bounded by count and bytes.
fn serve_sync(chain: &Chain, from: u64) -> Vec<(Block, CommitCertificate)> {
    let tip = chain.height();
    let mut out = Vec::new();
    let mut bytes = 0usize;
    let mut h = from.max(1);
    while h <= tip && (out.len() as u64) < SYNC_MAX_BLOCKS {
        let Some(b) = chain.committed_block(h) else {
            break;
        };
        let size = codec::encode(&b.0).len();
        if !out.is_empty() && bytes + size > SYNC_MAX_BYTES {
            break;
        }
        bytes += size;
        out.push(b);
        h += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_dns4_listen_address_listens_on_what_its_name_resolves_to() {
        let addr: Multiaddr = "/dns4/localhost/tcp/7001".parse().unwrap();
        let got = listen_addrs(&addr).await.unwrap();
        let want: Multiaddr = "/ip4/127.0.0.1/tcp/7001".parse().unwrap();
        assert_eq!(got, vec![want]);
    }

    #[tokio::test]
    async fn an_ip_listen_address_is_listened_on_as_it_is() {
        for a in ["/ip4/127.0.0.1/tcp/0", "/ip6/::1/tcp/7001"] {
            let addr: Multiaddr = a.parse().unwrap();
            assert_eq!(listen_addrs(&addr).await.unwrap(), vec![addr]);
        }
    }

    #[tokio::test]
    async fn a_listen_name_that_does_not_resolve_is_named() {
        // RFC 6761: names under .invalid never resolve.
        let addr: Multiaddr = "/dns4/validator-1.invalid/tcp/7001".parse().unwrap();
        let err = listen_addrs(&addr).await.unwrap_err().to_string();
        assert!(
            err.contains("cannot listen on /dns4/validator-1.invalid/tcp/7001")
                && err.contains("\"validator-1.invalid\" does not resolve"),
            "{err}"
        );
    }

    #[test]
    fn a_peer_budget_allows_bursts_then_refuses_then_refills() {
        let t0 = Instant::now();
        let mut b = PeerBudget::new(t0, 1000);
        let burst = 2 * PEER_MSGS_PER_SEC;
        assert!(
            (0..burst).all(|_| b.take(t0, 1)),
            "a burst of twice the rate passes"
        );
        assert!(!b.take(t0, 1), "the next message is over budget");
        // Half a second later, half a second's worth is back.
        let t1 = t0 + Duration::from_millis(500);
        let back = PEER_MSGS_PER_SEC / 2;
        assert!((0..back).all(|_| b.take(t1, 1)));
        assert!(!b.take(t1, 1));
        // Bytes: at most two of the largest messages at once.
        let mut b = PeerBudget::new(t0, 1000);
        assert!(b.take(t0, 1000) && b.take(t0, 1000));
        assert!(
            !b.take(t0, 1000),
            "a third maximal message in the same instant is refused"
        );
    }
}
