//! Voicemail lamps across servers (MWI), on simulated Asterisk servers: the mailboxes of the
//! server with voicemail reach a server without voicemail as MWIUpdate counts
//! (res_mwi_external) and a server with voicemail of its own as a `Custom:` lamp, never echo
//! back, and survive an Asterisk restart of the receiver.

mod common;

use ami::DeviceState;
use common::*;
use serde_json::Value;
use sim::voicemail::MwiProvider;
use sim::{Sim, SimConfig};
use std::net::SocketAddr;

fn server(name: &str, mwi: MwiProvider) -> SimConfig {
    let mut c = SimConfig::federated(name, &[], &[]);
    c.mwi = mwi;
    c
}

async fn mailbox_is(sim: &Sim, mailbox: &str, counts: (u32, u32)) -> bool {
    sim.wait_until(WAIT, |w| w.mailbox(mailbox) == Some(counts)).await
}

/// The broker's mailbox entries: (origin, mailbox, new, old).
async fn broker_mailboxes(http: SocketAddr) -> Vec<(String, String, u64, u64)> {
    let body = tokio::task::spawn_blocking(move || {
        let mut r = ureq::get(&format!("http://{http}/api/table"))
            .call()
            .expect("the broker's table");
        r.body_mut().read_to_string().unwrap()
    })
    .await
    .unwrap();
    let table: Value = serde_json::from_str(&body).unwrap();
    let mut out: Vec<_> = table["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "mailbox")
        .map(|e| {
            (
                e["origin"].as_str().unwrap().to_string(),
                e["name"].as_str().unwrap().to_string(),
                e["new"].as_u64().unwrap_or(0),
                e["old"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_left_on_the_voicemail_server_lights_the_mailbox_elsewhere() {
    let vm = Sim::start(server(
        "vm",
        MwiProvider::Voicemail(vec!["100@default".into(), "101@default".into()]),
    ))
    .await
    .unwrap();
    let ext = Sim::start(server("ext", MwiProvider::External)).await.unwrap();
    let lamp = Sim::start(server("lamp", MwiProvider::Voicemail(vec!["500@default".into()])))
        .await
        .unwrap();
    // A message already waits before anyone starts: the list at connect carries it.
    assert!(vm.set_voicemail("101@default", 1, 3));
    let dir = Dir::new("mwi");
    let port = free_port();
    let broker = Proc::start(
        &dir,
        "broker",
        &["broker", "-c", broker_config(&dir, port).to_str().unwrap()],
    );
    let http = broker.http_addr(0).await.expect("the broker's listener");
    let _vm = start_agent_with(&dir, &vm, port, "");
    let _ext = start_agent_with(&dir, &ext, port, "mwi_sink = mwiupdate");
    let _lamp = start_agent_with(&dir, &lamp, port, "mwi_sink = custom");

    assert!(mailbox_is(&ext, "101@default", (1, 3)).await, "the list at connect");
    assert!(wait_state(&lamp, "Custom:MWI101", DeviceState::Inuse).await);
    assert!(
        mailbox_is(&ext, "100@default", (0, 0)).await,
        "an empty mailbox is shown empty"
    );
    assert!(wait_state(&lamp, "Custom:MWI100", DeviceState::NotInuse).await);

    // A message is left; then heard (new -> old): the lamp follows.
    assert!(vm.set_voicemail("100@default", 1, 0));
    assert!(mailbox_is(&ext, "100@default", (1, 0)).await);
    assert!(wait_state(&lamp, "Custom:MWI100", DeviceState::Inuse).await);
    assert!(vm.set_voicemail("100@default", 0, 1));
    assert!(mailbox_is(&ext, "100@default", (0, 1)).await);
    assert!(wait_state(&lamp, "Custom:MWI100", DeviceState::NotInuse).await);

    // The lamp server's own mailbox reaches ext too (it publishes), and never lands on itself.
    assert!(lamp.set_voicemail("500@default", 2, 0));
    assert!(mailbox_is(&ext, "500@default", (2, 0)).await);
    // No echo: ext's MWIUpdates raised MessageWaiting events on ext, which must not have
    // come back as ext's own. A later change crosses first, then the broker's table is read.
    assert!(vm.set_voicemail("101@default", 0, 4));
    assert!(mailbox_is(&ext, "101@default", (0, 4)).await);
    let table = broker_mailboxes(http).await;
    assert_eq!(
        table,
        vec![
            ("lamp".into(), "500@default".into(), 2, 0),
            ("vm".into(), "100@default".into(), 0, 1),
            ("vm".into(), "101@default".into(), 0, 4),
        ],
        "only the servers' own mailboxes, once each"
    );
    assert!(
        !lamp.setvar_log().iter().any(|(v, _)| v.contains("MWI500")),
        "a server's own mailbox is not mirrored on itself"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mailbox_counts_survive_a_restart_of_the_receiving_asterisk() {
    let vm = Sim::start(server("vm", MwiProvider::Voicemail(vec!["100@default".into()])))
        .await
        .unwrap();
    let ext = Sim::start(server("ext", MwiProvider::External)).await.unwrap();
    let dir = Dir::new("mwi-restart");
    let port = free_port();
    let _broker = Proc::start(
        &dir,
        "broker",
        &["broker", "-c", broker_config(&dir, port).to_str().unwrap()],
    );
    let _vm = start_agent_with(&dir, &vm, port, "");
    let _ext = start_agent_with(&dir, &ext, port, "mwi_sink = mwiupdate");
    assert!(vm.set_voicemail("100@default", 3, 0));
    assert!(mailbox_is(&ext, "100@default", (3, 0)).await);

    // res_mwi_external keeps its mailboxes in astdb: after the restart they are there, and
    // the agent reads them back as its own mirrors (not as ext's mailboxes to publish).
    ext.restart(std::time::Duration::from_millis(300)).await;
    assert_eq!(ext.mailbox("100@default"), Some((3, 0)));
    // A change made while ext was down, or after: it arrives.
    assert!(vm.set_voicemail("100@default", 1, 2));
    assert!(mailbox_is(&ext, "100@default", (1, 2)).await);
}
