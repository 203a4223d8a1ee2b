//! libp2p peer ids and multiaddrs, checked as strings so that this crate does not depend on
//! libp2p. Only the forms a Twinledger validator uses are accepted.

use std::net::{Ipv4Addr, Ipv6Addr};

use twinledger_core::PublicKey;

/// The identity-multihash prefix of a protobuf-encoded ed25519 libp2p public key:
/// multihash code 0x00 (identity), length 0x24 (36), then the protobuf `PublicKey` message
/// `{ Type (field 1) = Ed25519 (1), Data (field 2) = 32 bytes }`.
const ED25519_IDENTITY_PREFIX: [u8; 6] = [0x00, 0x24, 0x08, 0x01, 0x12, 0x20];
/// The sha2-256 multihash prefix: code 0x12, length 0x20 (32).
const SHA2_256_PREFIX: [u8; 2] = [0x12, 0x20];
/// Longest peer id string accepted (the ed25519 form is 52 characters, sha2-256 46).
const MAX_PEER_ID_CHARS: usize = 64;
/// Longest listen address accepted.
pub(crate) const MAX_LISTEN_ADDR_BYTES: usize = 512;

/// The libp2p peer id of an ed25519 key: base58btc of the identity multihash of the
/// protobuf-encoded key (`0x00 0x24 0x08 0x01 0x12 0x20 || key32`), the `12D3KooW...` form
/// libp2p derives for ed25519 keys. Lets a node derive its peer id from its consensus key
/// without this crate depending on libp2p.
pub fn peer_id_from_ed25519(key: &PublicKey) -> String {
    let mut raw = Vec::with_capacity(ED25519_IDENTITY_PREFIX.len() + 32);
    raw.extend_from_slice(&ED25519_IDENTITY_PREFIX);
    raw.extend_from_slice(key.as_bytes());
    bs58::encode(raw).into_string()
}

/// Checks a peer id string: base58btc of either the identity multihash of a protobuf ed25519
/// key (a valid point) or a sha2-256 multihash. Returns what is wrong.
pub(crate) fn check_peer_id(peer_id: &str) -> Result<(), String> {
    if peer_id.is_empty() {
        return Err("it is empty".into());
    }
    if peer_id.len() > MAX_PEER_ID_CHARS {
        return Err(format!(
            "it is {} bytes long; peer ids are at most {MAX_PEER_ID_CHARS}",
            peer_id.len()
        ));
    }
    let raw = bs58::decode(peer_id)
        .into_vec()
        .map_err(|e| format!("it is not base58btc ({e})"))?;
    if let Some(key) = raw.strip_prefix(&ED25519_IDENTITY_PREFIX[..]) {
        let key: &[u8; 32] = key.try_into().map_err(|_| {
            format!(
                "it is an identity multihash of an ed25519 key with {} key bytes, expected 32",
                key.len()
            )
        })?;
        return PublicKey::from_ed25519_bytes(key)
            .map(drop)
            .map_err(|e| format!("it embeds an ed25519 key that is refused ({e})"));
    }
    if let Some(digest) = raw.strip_prefix(&SHA2_256_PREFIX[..]) {
        if digest.len() == 32 {
            return Ok(());
        }
        return Err(format!(
            "it is a sha2-256 multihash with {} digest bytes, expected 32",
            digest.len()
        ));
    }
    Err(
        "it is neither the identity multihash of an ed25519 key (12D3KooW...) nor a sha2-256 \
         multihash (Qm...)"
            .into(),
    )
}

/// A listen address that passed [`check_listen_addr`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ListenAddr<'a> {
    /// The address without any `/p2p/<peer id>` suffix: what two validators must not share.
    pub(crate) transport: &'a str,
}

/// Checks a listen address against the accepted multiaddr forms:
/// `/ip4/<ipv4>/tcp/<port>`, `/ip6/<ipv6>/tcp/<port>`, `/dns4|dns6|dns/<name>/tcp/<port>`,
/// `/ip4|ip6/<addr>/udp/<port>/quic-v1`, each optionally followed by `/p2p/<peer id>`, which
/// must then be `peer_id`. Returns what is wrong.
pub(crate) fn check_listen_addr<'a>(
    addr: &'a str,
    peer_id: &str,
) -> Result<ListenAddr<'a>, String> {
    if addr.len() > MAX_LISTEN_ADDR_BYTES {
        return Err(format!(
            "it is {} bytes long, over the limit of {MAX_LISTEN_ADDR_BYTES}",
            addr.len()
        ));
    }
    let Some(rest) = addr.strip_prefix('/') else {
        return Err("a multiaddr starts with '/'".into());
    };
    let parts: Vec<&str> = rest.split('/').collect();
    let forms = "expected /ip4/<address>/tcp/<port>, /ip6/<address>/tcp/<port>, \
                 /dns4|dns6|dns/<name>/tcp/<port> or /ip4|ip6/<address>/udp/<port>/quic-v1, \
                 optionally followed by /p2p/<peer id>";
    let (is_ip, host) = match parts.as_slice() {
        [proto, host, ..] => (matches!(*proto, "ip4" | "ip6"), (*proto, *host)),
        _ => return Err(format!("it is too short; {forms}")),
    };
    match host {
        ("ip4", h) => {
            h.parse::<Ipv4Addr>()
                .map_err(|_| format!("{h:?} is not an IPv4 address"))?;
        }
        ("ip6", h) => {
            h.parse::<Ipv6Addr>()
                .map_err(|_| format!("{h:?} is not an IPv6 address"))?;
        }
        ("dns" | "dns4" | "dns6", h) => check_dns_name(h)?,
        (p, _) => {
            return Err(format!(
                "protocol {p:?} is not one of ip4, ip6, dns, dns4, dns6; {forms}"
            ));
        }
    }
    let consumed = match &parts[2..] {
        ["tcp", port, ..] => {
            check_port(port)?;
            4
        }
        ["udp", port, "quic-v1", ..] if is_ip => {
            check_port(port)?;
            5
        }
        ["udp", _, ..] if !is_ip => {
            return Err("udp/quic-v1 needs an ip4 or ip6 address, not a DNS name".into());
        }
        ["udp", _, ..] => return Err("a udp address must end with /quic-v1".into()),
        ["udp"] | ["tcp"] => return Err("the port is missing".into()),
        [] => return Err(format!("the transport is missing; {forms}")),
        [t, ..] => {
            return Err(format!(
                "transport {t:?} is not tcp or udp/quic-v1; {forms}"
            ));
        }
    };
    let transport_len = parts[..consumed].iter().map(|p| p.len() + 1).sum::<usize>();
    let transport = &addr[..transport_len];
    match &parts[consumed..] {
        [] => {}
        ["p2p"] => return Err("the peer id after /p2p is missing".into()),
        ["p2p", id, rest @ ..] => {
            if let Some(extra) = rest.first() {
                return Err(format!(
                    "unexpected {extra:?} after /p2p/{id}; nothing may follow the peer id"
                ));
            }
            if *id != peer_id {
                return Err(format!(
                    "it ends with /p2p/{id}, which is not this validator's peer id {peer_id}"
                ));
            }
        }
        [extra, ..] => {
            return Err(format!(
                "unexpected {extra:?} after {transport}; only /p2p/<peer id> may follow"
            ));
        }
    }
    Ok(ListenAddr { transport })
}

/// A TCP or UDP port: decimal, no sign or leading zero, 1..=65535.
fn check_port(port: &str) -> Result<(), String> {
    let ok = !port.is_empty()
        && port.len() <= 5
        && port.bytes().all(|b| b.is_ascii_digit())
        && !port.starts_with('0');
    match port.parse::<u16>() {
        Ok(p) if ok && p != 0 => Ok(()),
        _ => Err(format!("port {port:?} is not a number in 1..=65535")),
    }
}

/// A DNS name: 1..=253 bytes of dot-separated labels, each 1..=63 letters, digits and
/// hyphens, not starting or ending with a hyphen.
fn check_dns_name(name: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("{name:?} is not a DNS name: {why}"));
    if name.is_empty() || name.len() > 253 {
        return bad("it must be 1..=253 bytes");
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return bad("every label must be 1..=63 bytes");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return bad("labels hold only letters, digits and '-'");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return bad("a label must not start or end with '-'");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use twinledger_core::devkit::dev_key;

    /// The ed25519 public key of the libp2p peer-id spec's test vectors (protobuf
    /// `080112201ed1...e27e`) and the peer id libp2p derives from it.
    #[test]
    fn libp2p_spec_vector() {
        let mut key = [0u8; 32];
        let hex = "1ed1e8fae2c4a144b8be8fd4b47bf3d3b34b871c3cacf6010f0e42d474fce27e";
        for (i, b) in key.iter_mut().enumerate() {
            *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
        }
        let key = PublicKey::from_ed25519_bytes(&key).unwrap();
        assert_eq!(
            peer_id_from_ed25519(&key),
            "12D3KooWBtg3aaRMjxwedh83aGiUkwSxDwUZkzuJcfaqUmo7R3pq"
        );
    }

    #[test]
    fn derived_peer_ids_are_accepted() {
        let id = peer_id_from_ed25519(&dev_key("x").public());
        assert!(id.starts_with("12D3KooW"), "{id}");
        assert_eq!(id.len(), 52);
        check_peer_id(&id).unwrap();
    }

    #[test]
    fn sha256_peer_ids_are_accepted() {
        let mut raw = SHA2_256_PREFIX.to_vec();
        raw.extend_from_slice(&[7; 32]);
        let id = bs58::encode(raw).into_string();
        assert!(id.starts_with("Qm"), "{id}");
        check_peer_id(&id).unwrap();
    }

    #[test]
    fn bad_peer_ids_are_named() {
        let cases = [
            ("", "empty"),
            ("0OIl", "not base58btc"),
            (&"z".repeat(65), "at most 64"),
            ("3yZe7d", "neither the identity multihash"),
        ];
        for (id, want) in cases {
            let err = check_peer_id(id).unwrap_err();
            assert!(err.contains(want), "{id}: {err}");
        }
        // Identity form with a short key.
        let mut raw = ED25519_IDENTITY_PREFIX.to_vec();
        raw.extend_from_slice(&[1; 31]);
        let err = check_peer_id(&bs58::encode(raw).into_string()).unwrap_err();
        assert!(err.contains("31 key bytes"), "{err}");
        // Identity form with a small-order point (the identity element).
        let mut raw = ED25519_IDENTITY_PREFIX.to_vec();
        let mut point = [0u8; 32];
        point[0] = 1;
        raw.extend_from_slice(&point);
        let err = check_peer_id(&bs58::encode(raw).into_string()).unwrap_err();
        assert!(err.contains("refused"), "{err}");
        // sha2-256 with a short digest.
        let mut raw = SHA2_256_PREFIX.to_vec();
        raw.extend_from_slice(&[1; 20]);
        let err = check_peer_id(&bs58::encode(raw).into_string()).unwrap_err();
        assert!(err.contains("20 digest bytes"), "{err}");
    }

    #[test]
    fn accepted_listen_addrs() {
        let id = peer_id_from_ed25519(&dev_key("x").public());
        let ok = [
            ("/ip4/127.0.0.1/tcp/7001", "/ip4/127.0.0.1/tcp/7001"),
            ("/ip6/::1/tcp/7001", "/ip6/::1/tcp/7001"),
            ("/ip6/2001:db8::7/tcp/65535", "/ip6/2001:db8::7/tcp/65535"),
            (
                "/dns4/node-1.st-mary.example/tcp/443",
                "/dns4/node-1.st-mary.example/tcp/443",
            ),
            ("/dns6/localhost/tcp/1", "/dns6/localhost/tcp/1"),
            ("/dns/a.b/tcp/9000", "/dns/a.b/tcp/9000"),
            (
                "/ip4/10.0.0.1/udp/7001/quic-v1",
                "/ip4/10.0.0.1/udp/7001/quic-v1",
            ),
            ("/ip6/::1/udp/7001/quic-v1", "/ip6/::1/udp/7001/quic-v1"),
        ];
        for (addr, transport) in ok {
            assert_eq!(
                check_listen_addr(addr, &id).unwrap().transport,
                transport,
                "{addr}"
            );
            let with_p2p = format!("{addr}/p2p/{id}");
            assert_eq!(
                check_listen_addr(&with_p2p, &id).unwrap().transport,
                transport,
                "{with_p2p}"
            );
        }
    }

    /// Host names as a compose file or an operator gives them, in each DNS form the node
    /// resolves (`/dns4`, `/dns6`, `/dns`), with and without the peer id.
    #[test]
    fn dns_names_are_accepted_in_every_dns_form() {
        let id = peer_id_from_ed25519(&dev_key("x").public());
        let label63 = "a".repeat(63);
        let names = [
            "localhost",
            "validator-1",
            "node1.st-mary.internal",
            "a",
            "123",
            "xn--bcher-kva.example",
            label63.as_str(),
        ];
        for proto in ["dns4", "dns6", "dns"] {
            for name in names {
                let addr = format!("/{proto}/{name}/tcp/7001");
                assert_eq!(
                    check_listen_addr(&addr, &id).unwrap().transport,
                    addr,
                    "{addr}"
                );
                let with_p2p = format!("{addr}/p2p/{id}");
                assert_eq!(check_listen_addr(&with_p2p, &id).unwrap().transport, addr);
            }
        }
    }

    /// Malformed names are refused in each DNS form, naming the name and what is wrong.
    #[test]
    fn malformed_dns_names_are_refused_in_every_dns_form() {
        let id = peer_id_from_ed25519(&dev_key("x").public());
        let label64 = "a".repeat(64);
        let long = vec!["abcdefgh"; 30].join(".");
        let cases = [
            ("", "1..=253 bytes"),
            ("localhost.", "every label must be 1..=63 bytes"),
            (".localhost", "every label must be 1..=63 bytes"),
            (label64.as_str(), "every label must be 1..=63 bytes"),
            (long.as_str(), "1..=253 bytes"),
            ("node_1", "only letters, digits and '-'"),
            ("node 1", "only letters, digits and '-'"),
            ("bücher.example", "only letters, digits and '-'"),
            ("-node", "must not start or end with '-'"),
            ("node-", "must not start or end with '-'"),
        ];
        for proto in ["dns4", "dns6", "dns"] {
            for (name, want) in cases {
                let addr = format!("/{proto}/{name}/tcp/7001");
                let err = check_listen_addr(&addr, &id).unwrap_err();
                assert!(
                    err.contains("is not a DNS name") && err.contains(want),
                    "{addr}: {err}"
                );
            }
            // A name needs a TCP port; QUIC needs an IP address.
            let err = check_listen_addr(&format!("/{proto}/localhost"), &id).unwrap_err();
            assert!(err.contains("transport is missing"), "{proto}: {err}");
            let err = check_listen_addr(&format!("/{proto}/localhost/tcp/0"), &id).unwrap_err();
            assert!(err.contains("1..=65535"), "{proto}: {err}");
            let err = check_listen_addr(&format!("/{proto}/localhost/udp/7001/quic-v1"), &id)
                .unwrap_err();
            assert!(
                err.contains("needs an ip4 or ip6 address"),
                "{proto}: {err}"
            );
        }
        let err = check_listen_addr("/dns5/localhost/tcp/1", &id).unwrap_err();
        assert!(err.contains("protocol \"dns5\""), "{err}");
    }

    #[test]
    fn refused_listen_addrs_are_named() {
        let id = peer_id_from_ed25519(&dev_key("x").public());
        let other = peer_id_from_ed25519(&dev_key("y").public());
        let long = format!("/dns4/{}/tcp/1", "a".repeat(600));
        let cases: Vec<(String, &str)> = vec![
            ("ip4/127.0.0.1/tcp/1".into(), "starts with '/'"),
            ("/".into(), "too short"),
            ("/ip4".into(), "too short"),
            ("/ip5/1.2.3.4/tcp/1".into(), "protocol \"ip5\""),
            ("/ip4/1.2.3/tcp/1".into(), "not an IPv4 address"),
            ("/ip4/01.2.3.4/tcp/1".into(), "not an IPv4 address"),
            ("/ip6/1.2.3.4/tcp/1".into(), "not an IPv6 address"),
            ("/dns4/-bad.example/tcp/1".into(), "not a DNS name"),
            ("/dns4/a..b/tcp/1".into(), "not a DNS name"),
            ("/dns4/a_b/tcp/1".into(), "not a DNS name"),
            ("/ip4/1.2.3.4".into(), "transport is missing"),
            ("/ip4/1.2.3.4/tcp".into(), "port is missing"),
            ("/ip4/1.2.3.4/tcp/0".into(), "1..=65535"),
            ("/ip4/1.2.3.4/tcp/65536".into(), "1..=65535"),
            ("/ip4/1.2.3.4/tcp/080".into(), "1..=65535"),
            ("/ip4/1.2.3.4/tcp/+80".into(), "1..=65535"),
            ("/ip4/1.2.3.4/tcp/http".into(), "1..=65535"),
            ("/ip4/1.2.3.4/udp/1".into(), "must end with /quic-v1"),
            ("/ip4/1.2.3.4/udp/1/quic".into(), "must end with /quic-v1"),
            ("/dns4/a.example/udp/1/quic-v1".into(), "not a DNS name"),
            ("/ip4/1.2.3.4/sctp/1".into(), "transport \"sctp\""),
            ("/ip4/1.2.3.4/tcp/1/".into(), "unexpected \"\""),
            ("/ip4/1.2.3.4/tcp/1/ws".into(), "unexpected \"ws\""),
            (
                "/ip4/1.2.3.4/tcp/1/p2p".into(),
                "peer id after /p2p is missing",
            ),
            (
                format!("/ip4/1.2.3.4/tcp/1/p2p/{other}"),
                "not this validator's peer id",
            ),
            (
                format!("/ip4/1.2.3.4/tcp/1/p2p/{id}/x"),
                "nothing may follow",
            ),
            (long, "over the limit"),
        ];
        for (addr, want) in cases {
            let err = check_listen_addr(&addr, &id).unwrap_err();
            assert!(err.contains(want), "{addr}: {err}");
        }
    }
}
