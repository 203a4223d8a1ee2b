//! Who reads what (PROTOCOL §11.5): for each read endpoint, a table of parties and the answer
//! each gets, asserted entry by entry. Parties: the patient, a delegate within and outside its
//! scope, a delegate of the whole scope (a guardian), the grantee organisation and its privacy
//! officer, one of its actors, another member organisation and its actor, an auditor, the
//! validator, another patient, and a stranger. One chain, built once; no sleeps.

mod common;

use std::collections::BTreeSet;

use common::*;
use serde_json::Value;
use twinledger_core::codes::{Action, Actions, Categories, DataCategory, Purpose, Purposes, Role};
use twinledger_core::event::access::AccessRequest;
use twinledger_core::event::break_glass::BreakGlassRequest;
use twinledger_core::event::consent::{ConsentGrant, Grantee};
use twinledger_core::event::delegation::{DelegateGrant, Scope};
use twinledger_core::event::membership::ActorEnrol;
use twinledger_core::{Commitment, EventId, EventPayload, Keypair, Timestamp};

fn scope(cats: &[DataCategory], purposes: &[Purpose]) -> Scope {
    Scope {
        categories: cats.iter().copied().collect(),
        purposes: purposes.iter().copied().collect(),
        actions: [Action::Read].into_iter().collect(),
    }
}

fn grant(patient: &Keypair, to: Grantee, scope: Scope) -> EventPayload {
    EventPayload::ConsentGrant(ConsentGrant {
        patient: patient.public(),
        grantee: to,
        scope,
        valid_from: Timestamp(0),
        valid_until: None,
    })
}

fn access(patient: &Keypair, category: DataCategory, purpose: Purpose) -> EventPayload {
    EventPayload::AccessRequest(AccessRequest {
        patient: patient.public(),
        category,
        purpose,
        action: Action::Read,
        resource: Commitment::new(&[1; 32], b"twin://x"),
    })
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("<no code>")
}

/// The ids in `v[list]`, as a set of hex strings.
fn ids(v: &Value, list: &str) -> BTreeSet<String> {
    v[list]
        .as_array()
        .unwrap_or_else(|| panic!("no list `{list}` in {v}"))
        .iter()
        .map(|e| e["id"].as_str().expect("an id").to_string())
        .collect()
}

fn set(ids: &[&EventId]) -> BTreeSet<String> {
    ids.iter().map(|i| i.to_string()).collect()
}

/// The chain every table reads, and its parties.
struct World {
    node: TestNode,
    k: Keys,
    alice: Keypair,
    dave: Keypair,
    gwen: Keypair,
    officer: Keypair,
    bob: Keypair,
    stranger: Keypair,
    /// Alice's grants: to the physician (vital signs, for treatment), to the institute
    /// (genetics, research), to the institute's researchers (mental health, research).
    g_phys: EventId,
    g_inst: EventId,
    g_role: EventId,
    /// Delegations: dave (vital signs, treatment, read), gwen (every code).
    d_dave: EventId,
    d_gwen: EventId,
    /// Requests: physician reads vital signs, researcher reads genetics, physician breaks the
    /// glass on mental health.
    a_phys: EventId,
    a_res: EventId,
    b_phys: EventId,
    /// The hospital enrols its privacy officer (concerns no patient).
    enrol: EventId,
}

async fn world(dir: &std::path::Path) -> World {
    let node = TestNode::start(dir).await.unwrap();
    let k = keys();
    let alice = patient("alice");
    let dave = patient("dave");
    let gwen = patient("gwen");
    let officer = patient("officer");
    let mut log = 0;
    let mut submit = async |ev: twinledger_core::SignedEvent| {
        let (s, v) = node.submit(&ev).await;
        assert!(s == 200 || s == 202, "{s} {v}");
        log += 1;
        node.wait_log(log).await;
        ev.id()
    };
    let g_phys = submit(node.event(
        &alice,
        0,
        grant(
            &alice,
            Grantee::Actor(k.physician.public()),
            scope(&[DataCategory::VitalSigns], &[Purpose::Treat]),
        ),
    ))
    .await;
    let g_inst = submit(node.event(
        &alice,
        1,
        grant(
            &alice,
            Grantee::Organisation(k.institute.public()),
            scope(&[DataCategory::Genetic], &[Purpose::Research]),
        ),
    ))
    .await;
    let g_role = submit(node.event(
        &alice,
        2,
        grant(
            &alice,
            Grantee::Role {
                role: Role::Researcher,
                organisation: Some(k.institute.public()),
            },
            scope(&[DataCategory::MentalHealth], &[Purpose::Research]),
        ),
    ))
    .await;
    let d_dave = submit(node.event(
        &alice,
        3,
        EventPayload::DelegateGrant(DelegateGrant {
            patient: alice.public(),
            delegate: dave.public(),
            scope: scope(&[DataCategory::VitalSigns], &[Purpose::Treat]),
            valid_until: None,
        }),
    ))
    .await;
    let d_gwen = submit(node.event(
        &alice,
        4,
        EventPayload::DelegateGrant(DelegateGrant {
            patient: alice.public(),
            delegate: gwen.public(),
            scope: Scope {
                categories: Categories::all(),
                purposes: Purposes::all(),
                actions: Actions::all(),
            },
            valid_until: None,
        }),
    ))
    .await;
    let enrol = submit(node.event(
        &k.hospital,
        0,
        EventPayload::ActorEnrol(ActorEnrol {
            actor: officer.public(),
            role: Role::PrivacyOfficer,
        }),
    ))
    .await;
    let a_phys = submit(node.event(
        &k.physician,
        0,
        access(&alice, DataCategory::VitalSigns, Purpose::Treat),
    ))
    .await;
    let a_res = submit(node.event(
        &k.researcher,
        0,
        access(&alice, DataCategory::Genetic, Purpose::Research),
    ))
    .await;
    let b_phys = submit(node.event(
        &k.physician,
        1,
        EventPayload::BreakGlassRequest(BreakGlassRequest {
            patient: alice.public(),
            category: DataCategory::MentalHealth,
            action: Action::Read,
            resource: Commitment::new(&[2; 32], b"twin://x"),
            reason: Commitment::new(&[3; 32], b"unconscious"),
        }),
    ))
    .await;
    World {
        node,
        k,
        alice,
        dave,
        gwen,
        officer,
        bob: patient("bob"),
        stranger: patient("stranger"),
        g_phys,
        g_inst,
        g_role,
        d_dave,
        d_gwen,
        a_phys,
        a_res,
        b_phys,
        enrol,
    }
}

impl World {
    /// Every party, by name.
    fn parties(&self) -> Vec<(&'static str, &Keypair)> {
        vec![
            ("patient", &self.alice),
            ("auditor", &self.k.auditor),
            ("guardian (whole scope)", &self.gwen),
            ("delegate (vital signs)", &self.dave),
            ("grantee organisation", &self.k.hospital),
            ("its privacy officer", &self.officer),
            ("its physician", &self.k.physician),
            ("other organisation", &self.k.institute),
            ("its researcher", &self.k.researcher),
            ("validator", &self.k.validator),
            ("another patient", &self.bob),
            ("stranger", &self.stranger),
        ]
    }
}

/// Expected answer: the listed ids, or a refusal with this status.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Answer {
    Lists(Vec<(&'static str, BTreeSet<String>)>),
    Refused(u16),
}

async fn check_table(w: &World, path: &str, expect: &dyn Fn(&str) -> Answer) {
    for (name, key) in w.parties() {
        let (s, v) = w.node.signed_get(key, path).await;
        match expect(name) {
            Answer::Lists(lists) => {
                assert_eq!(s, 200, "{name} reading {path}: {v}");
                for (list, want) in lists {
                    assert_eq!(ids(&v, list), want, "{name} reading {path}, `{list}`: {v}");
                }
            }
            Answer::Refused(status) => {
                assert_eq!(s, status, "{name} reading {path}: {v}");
                assert!(
                    matches!(code(&v), "forbidden" | "unknown_key"),
                    "{name} reading {path}: {v}"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_party_reads_no_more_than_its_consent_on_every_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let w = world(dir.path()).await;
    let all_grants = set(&[&w.g_phys, &w.g_inst, &w.g_role]);
    let all_delegations = set(&[&w.d_dave, &w.d_gwen]);
    let all_requests = set(&[&w.a_phys, &w.a_res, &w.b_phys]);

    // §11.5 consents: the patient's view is whole; a delegate sees the grants its scope
    // overlaps and its own delegation; an organisation the grants naming it, its actors or a
    // role in it, and no delegation; nobody else anything.
    let consents = format!("/v1/patients/{}/consents", w.alice.public());
    let lists = |g: BTreeSet<String>, d: BTreeSet<String>| {
        Answer::Lists(vec![("grants", g), ("delegations", d)])
    };
    check_table(&w, &consents, &|who| match who {
        "patient" | "auditor" | "guardian (whole scope)" => {
            lists(all_grants.clone(), all_delegations.clone())
        }
        "delegate (vital signs)" => lists(set(&[&w.g_phys]), set(&[&w.d_dave])),
        "grantee organisation" | "its privacy officer" => lists(set(&[&w.g_phys]), set(&[])),
        "other organisation" => lists(set(&[&w.g_inst, &w.g_role]), set(&[])),
        _ => Answer::Refused(403),
    })
    .await;

    // §11.5 accesses: a delegate sees the requests its scope covers (not the break-glass, whose
    // purpose is ETREAT, nor genetics); an organisation its own actors' requests.
    let accesses = format!("/v1/patients/{}/accesses", w.alice.public());
    let list = |a: BTreeSet<String>| Answer::Lists(vec![("accesses", a)]);
    check_table(&w, &accesses, &|who| match who {
        "patient" | "auditor" | "guardian (whole scope)" => list(all_requests.clone()),
        "delegate (vital signs)" => list(set(&[&w.a_phys])),
        "grantee organisation" | "its privacy officer" => list(set(&[&w.a_phys, &w.b_phys])),
        "other organisation" => list(set(&[&w.a_res])),
        _ => Answer::Refused(403),
    })
    .await;

    // §11.5 history: the whole view only.
    let history = format!("/v1/patients/{}/history", w.alice.public());
    for (name, key) in w.parties() {
        let (s, v) = w.node.signed_get(key, &history).await;
        let whole = matches!(name, "patient" | "auditor" | "guardian (whole scope)");
        if whole {
            assert_eq!(s, 200, "{name}: {v}");
            assert_eq!(v["events"].as_array().map(Vec::len), Some(8), "{name}: {v}");
        } else {
            assert_eq!(s, 403, "{name} reading the history: {v}");
        }
    }

    // §11.5 reviews: auditors the whole queue; the organisation and its privacy officer their
    // own actors' break-glass requests; another organisation an empty queue of its own.
    let q = |ids: BTreeSet<String>| Answer::Lists(vec![("unreviewed", ids)]);
    check_table(&w, "/v1/reviews", &|who| match who {
        "auditor" | "grantee organisation" | "its privacy officer" => q(set(&[&w.b_phys])),
        "other organisation" => q(set(&[])),
        _ => Answer::Refused(403),
    })
    .await;

    // §11.5 blocks and export: auditors and validator operators only.
    for path in ["/v1/blocks/1", "/v1/export?from=1&to=1"] {
        for (name, key) in w.parties() {
            let auth = w
                .node
                .sign(key, path, twinledger_node::chain::now(), fresh_nonce());
            let mut req = w.node.http.get(w.node.url(path));
            for (h, v) in auth.headers() {
                req = req.header(h, v);
            }
            let s = req.send().await.unwrap().status().as_u16();
            let allowed = matches!(name, "auditor" | "grantee organisation" | "validator");
            assert_eq!(s == 200, allowed, "{name} reading {path}: {s}");
            if !allowed {
                assert_eq!(s, 403, "{name} reading {path}");
            }
        }
    }

    // §11.5 sequence: the key itself only.
    let seq = format!("/v1/keys/{}/sequence", w.alice.public());
    for (name, key) in w.parties() {
        let (s, v) = w.node.signed_get(key, &seq).await;
        assert_eq!(
            s == 200,
            name == "patient",
            "{name} reading alice's sequence: {v}"
        );
    }
    w.node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_not_yours_is_answered_exactly_as_one_that_does_not_exist() {
    let dir = tempfile::tempdir().unwrap();
    let w = world(dir.path()).await;
    let events: Vec<(&str, &EventId)> = vec![
        ("grant to physician", &w.g_phys),
        ("grant to institute", &w.g_inst),
        ("grant to institute researchers", &w.g_role),
        ("delegation to dave", &w.d_dave),
        ("delegation to gwen", &w.d_gwen),
        ("physician access", &w.a_phys),
        ("researcher access", &w.a_res),
        ("physician break-glass", &w.b_phys),
        ("officer enrolment", &w.enrol),
    ];
    // Who reads which event (§11.5): the author, a view of the patient that holds it, and for
    // the enrolment (no patient) auditors and member organisations.
    let readable = |who: &str, what: &str| -> bool {
        match who {
            "patient" | "guardian (whole scope)" => what != "officer enrolment",
            "auditor" => true,
            "delegate (vital signs)" => {
                matches!(
                    what,
                    "grant to physician" | "delegation to dave" | "physician access"
                )
            }
            "grantee organisation" => matches!(
                what,
                "grant to physician"
                    | "physician access"
                    | "physician break-glass"
                    | "officer enrolment"
            ),
            "its privacy officer" => matches!(
                what,
                "grant to physician" | "physician access" | "physician break-glass"
            ),
            "its physician" => matches!(what, "physician access" | "physician break-glass"),
            "other organisation" => matches!(
                what,
                "grant to institute"
                    | "grant to institute researchers"
                    | "researcher access"
                    | "officer enrolment"
            ),
            "its researcher" => what == "researcher access",
            _ => false,
        }
    };
    let unknown = EventId([0x5a; 32]);
    for (who, key) in w.parties() {
        let (s0, none) = w
            .node
            .signed_get(key, &format!("/v1/events/{unknown}"))
            .await;
        assert_eq!((s0, code(&none)), (404, "not_found"), "{who}: {none}");
        for (what, id) in &events {
            let (s, v) = w.node.signed_get(key, &format!("/v1/events/{id}")).await;
            if readable(who, what) {
                assert_eq!(s, 200, "{who} reading the {what}: {v}");
                assert_eq!(v["id"], id.to_string(), "{who}");
            } else {
                // Byte for byte the unknown id's answer, but for the id itself.
                let masked = v.to_string().replace(&id.to_string(), &unknown.to_string());
                assert_eq!(
                    (s, masked),
                    (s0, none.to_string()),
                    "{who} reading the {what} must look like an unknown id"
                );
            }
        }
    }
    w.node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_organisation_never_learns_the_restrictions_a_patient_set_for_others() {
    // The hospital reads the grant naming its physician, never the institute's genetics grant
    // nor the mental-health grant to the institute's researchers, not even their categories.
    let dir = tempfile::tempdir().unwrap();
    let w = world(dir.path()).await;
    let path = format!("/v1/patients/{}/consents", w.alice.public());
    let (s, v) = w.node.signed_get(&w.k.hospital, &path).await;
    assert_eq!(s, 200, "{v}");
    let text = v.to_string();
    for hidden in [
        w.g_inst.to_string(),
        w.g_role.to_string(),
        "\"MH\"".to_string(),
        w.k.institute.public().to_string(),
        w.dave.public().to_string(),
    ] {
        assert!(
            !text.contains(&hidden),
            "the hospital learned {hidden}: {v}"
        );
    }
    w.node.stop().await;
}
