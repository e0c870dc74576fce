//! What the table and an agent's queue hold per device, counted by the allocator: a sync of
//! 100,000 devices (and 10,000 presentities) queued for one agent.

use ami::{DeviceState, PresenceState};
use broker::outbox::Outbox;
use broker::table::{Staged, Staging, Table};
use proto::counting::{live, mb, peak, reset_peak, Counting};
use proto::Entry;

#[global_allocator]
static ALLOC: Counting = Counting;

#[test]
fn a_sync_of_100000_devices_queued_for_one_agent() {
    let n = 100_000;
    let chunks: Vec<Vec<Entry>> = (0..n + n / 10)
        .map(|i| {
            if i < n {
                Entry::device("s0", &format!("SIP/{i}"), DeviceState::Inuse)
            } else {
                Entry::presence(
                    "s0",
                    &format!("CustomPresence:p{i}"),
                    PresenceState::Away,
                    "lunch",
                    "back soon",
                )
            }
        })
        .collect::<Vec<_>>()
        .chunks(500)
        .map(<[Entry]>::to_vec)
        .collect();
    let base = live();
    reset_peak();
    let mut staging = Staging::default();
    for c in &chunks {
        staging.extend(c.iter().filter_map(Staged::new));
    }
    let staged = live() - base;
    let mut table = Table::default();
    let changed = table.replace_origin("s0", staging);
    let with_changes = live() - base;
    let mut outbox = Outbox::default();
    outbox.push_all(changed.iter().cloned(), changed.len(), std::time::Instant::now());
    drop(changed);
    let queued = live() - base;
    while !outbox.is_empty() {
        let batch = outbox.peek(500);
        outbox.commit(batch.len());
    }
    let table_only = live() - base;
    let peak = peak() - base;
    eprintln!(
        "staged {:.1} MB, table+changes {:.1} MB, table+queue {:.1} MB, table {:.1} MB, peak {:.1} MB",
        mb(staged),
        mb(with_changes),
        mb(queued),
        mb(table_only),
        mb(peak)
    );
    assert_eq!(table.len(), n + n / 10);
    // Measured: table 11.8 MB (110 bytes an entry), peak 26.0 MB (the table, the sync staged
    // and the changes queued).
    assert!(table_only < 16 << 20, "table {:.1} MB", mb(table_only));
    assert!(peak < 34 << 20, "peak {:.1} MB", mb(peak));
}
