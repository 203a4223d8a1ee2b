//! The dev chain, in memory: the whole life of consent and access on a real state machine.
//!
//! `cargo run -p twinledger-core --example devchain`
//!
//! A hospital runs 4 validators. Alice (a patient) shares her heart data for research but never
//! her genome, a researcher asks, Alice revokes, a physician breaks the glass in an emergency and
//! the privacy officer reviews it. Every block is built by a proposer, re-executed as an
//! independent validator would, and certified by the validators. At the end an auditor replays
//! the whole chain from genesis, checks every certificate, and a receipt (inclusion proof plus
//! certified checkpoint) is verified offline. Deterministic: keys come from labels.
#![allow(clippy::print_stdout)]

use twinledger_core::block::Outcome;
use twinledger_core::devkit::{Committed, DevChain, dev_key};
use twinledger_core::event::access::AccessRequest;
use twinledger_core::event::break_glass::{BreakGlassRequest, BreakGlassReview, Finding};
use twinledger_core::event::consent::{ConsentGrant, ConsentRevoke, Grantee};
use twinledger_core::event::delegation::Scope;
use twinledger_core::merkle::{self, Blake3Tree};
use twinledger_core::*;

fn show(c: &Committed) {
    let h = &c.block.header;
    println!(
        "block {:>2}  hash {}  events {}  log size {}  signed by {} validators",
        h.height,
        &h.hash().to_hex()[..16],
        h.event_count,
        h.log_size,
        c.certificate.signatures.len()
    );
    for (ev, out) in c.block.events.iter().zip(&c.results.outcomes) {
        let what = match out {
            Outcome::Applied => "applied".to_string(),
            Outcome::Access(Decision::Permit { grant }) => {
                format!("PERMIT (grant {})", &grant.to_hex()[..12])
            }
            Outcome::Access(Decision::Deny { reason }) => format!("DENY ({reason:?})"),
            Outcome::Access(Decision::BreakGlass) => {
                "BREAK-GLASS (flagged, queued for review)".into()
            }
        };
        println!("    {:<20} {}", ev.event.payload.kind(), what);
    }
    for (id, reason) in &c.rejected {
        println!("    refused {}: {reason}", &id.to_hex()[..12]);
    }
}

fn request(patient: &PublicKey, category: DataCategory, purpose: Purpose) -> EventPayload {
    EventPayload::AccessRequest(AccessRequest {
        patient: *patient,
        category,
        purpose,
        action: Action::Read,
        resource: Commitment::new(&[7; 32], b"twin-store://alice"),
    })
}

fn main() {
    let mut chain = DevChain::new(4);
    let alice = dev_key("patient/alice");
    let researcher = chain.researcher.clone();
    let physician = chain.physician.clone();
    let officer = chain.privacy_officer.clone();
    println!("Twinledger dev chain (in memory)");
    println!("  chain id  {}", chain.state.chain_id());
    println!("  patient   {}", alice.public());
    println!("  hospital  {}", chain.hospital.public());
    println!("  institute {}", chain.institute.public());
    println!();

    // Alice: heart data (vital signs, activity) for research by the institute, never the genome.
    let research = chain.event(
        &alice,
        EventPayload::ConsentGrant(ConsentGrant {
            patient: alice.public(),
            grantee: Grantee::Organisation(chain.institute.public()),
            scope: Scope {
                categories: [DataCategory::VitalSigns, DataCategory::Activity]
                    .into_iter()
                    .collect(),
                purposes: [Purpose::Research].into_iter().collect(),
                actions: [Action::Read].into_iter().collect(),
            },
            valid_from: Timestamp(0),
            valid_until: None,
        }),
    );
    let research_grant = research.id();
    show(&chain.commit(vec![research]));

    let heart = chain.event(
        &researcher,
        request(&alice.public(), DataCategory::VitalSigns, Purpose::Research),
    );
    let genome = chain.event(
        &researcher,
        request(&alice.public(), DataCategory::Genetic, Purpose::Research),
    );
    let permitted = heart.clone();
    let c = chain.commit(vec![heart, genome]);
    show(&c);
    let receipt_block = c.clone();

    let revoke = chain.event(
        &alice,
        EventPayload::ConsentRevoke(ConsentRevoke {
            patient: alice.public(),
            grant: research_grant,
        }),
    );
    let again = chain.event(
        &researcher,
        request(&alice.public(), DataCategory::VitalSigns, Purpose::Research),
    );
    show(&chain.commit(vec![revoke, again]));

    let bg = chain.event(
        &physician,
        EventPayload::BreakGlassRequest(BreakGlassRequest {
            patient: alice.public(),
            category: DataCategory::Imaging,
            action: Action::Read,
            resource: Commitment::new(&[7; 32], b"twin-store://alice/imaging"),
            reason: Commitment::new(&[8; 32], b"unconscious on arrival, suspected stroke"),
        }),
    );
    let bg_id = bg.id();
    show(&chain.commit(vec![bg]));
    println!(
        "    review queue: {} waiting",
        chain.state.review_queue().count()
    );
    let review = chain.event(
        &officer,
        EventPayload::BreakGlassReview(BreakGlassReview {
            request: bg_id,
            finding: Finding::Justified,
            notes: Commitment::new(&[9; 32], b"reviewed with the attending physician"),
        }),
    );
    show(&chain.commit(vec![review]));
    println!(
        "    review queue: {} waiting",
        chain.state.review_queue().count()
    );

    // The auditor: replay from genesis with nothing but the genesis and the blocks.
    println!();
    let mut replay = State::from_genesis(&chain.genesis).expect("genesis verifies");
    let mut decisions = 0;
    for c in &chain.blocks {
        let set = replay.validators_for(c.block.header.height).clone();
        let (next, results) = replay.apply_block(&c.block).expect("block verifies");
        c.certificate
            .verify(&c.block.header.checkpoint(), &set)
            .expect("certificate verifies");
        assert_eq!(results, c.results);
        decisions += results
            .outcomes
            .iter()
            .filter(|o| matches!(o, Outcome::Access(_)))
            .count();
        replay = next;
    }
    println!(
        "auditor replay: {} blocks, {} events, {} access decisions re-derived, every certificate verified",
        chain.blocks.len(),
        replay.log_size(),
        decisions
    );

    // A receipt for the permitted research access, checked offline against the latest checkpoint.
    let tip = chain.blocks.last().expect("blocks");
    let checkpoint = tip.block.header.checkpoint();
    let index =
        (receipt_block.block.header.log_size - receipt_block.block.events.len() as u64) as u64;
    let proof = chain
        .log
        .inclusion_proof(index, checkpoint.log_size)
        .expect("proof");
    merkle::verify_inclusion::<Blake3Tree>(
        index,
        checkpoint.log_size,
        &permitted.leaf_hash(),
        &proof,
        checkpoint.log_root.as_bytes(),
    )
    .expect("inclusion proof verifies");
    println!(
        "receipt: event {} is leaf {} of {} (proof of {} hashes) under the certified checkpoint:",
        &permitted.id().to_hex()[..12],
        index,
        checkpoint.log_size,
        proof.len()
    );
    println!();
    print!("{}", checkpoint.to_text(&tip.certificate));
}
