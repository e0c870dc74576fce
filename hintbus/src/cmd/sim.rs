//! `hintbus sim`: N simulated Asterisk servers on loopback, optionally with phone traffic
//! and a live view of their lamps through real AMI sessions.

use super::lamps::describe;
use ami::{Client, ClientConfig, ClientEvent, DeviceState};
use clap::Args;
use rand::seq::SliceRandom;
use sim::{Sim, SimConfig};
use std::time::Duration;

#[derive(Args)]
pub struct SimArgs {
    /// How many servers.
    #[arg(long, default_value_t = 3)]
    servers: usize,
    /// First AMI port; server i listens on base-port + i (0: any free ports).
    #[arg(long, default_value_t = 15038)]
    base_port: u16,
    /// Extensions on each server: phones SIP/<ext> with hints `SIP/<ext>&Custom:SIP/<ext>`.
    #[arg(long, value_delimiter = ',', default_value = "100,101,102,103")]
    extensions: Vec<String>,
    /// Phone state changes per second on each server (0: none).
    #[arg(long, default_value_t = 0.0)]
    traffic: f64,
    /// Log in to every server over AMI and print the lamps as they change.
    #[arg(long)]
    watch: bool,
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long)]
    duration: Option<u64>,
}

pub async fn run(args: SimArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.servers > 0, "--servers must be at least 1");
    anyhow::ensure!(
        args.traffic >= 0.0 && args.traffic.is_finite(),
        "--traffic must be a rate >= 0, got {}",
        args.traffic
    );
    let exts: Vec<&str> = args.extensions.iter().map(String::as_str).collect();
    let names: Vec<String> = (0..args.servers)
        .map(|i| ((b'a' + (i % 26) as u8) as char).to_string() + &suffix(i))
        .collect();
    let base = (args.base_port != 0).then_some(args.base_port);
    let sims = sim::start_many(args.servers, base, |i| SimConfig::pbx(&names[i], &exts)).await?;
    for s in &sims {
        println!(
            "simulated Asterisk {:<4} AMI on {}  (user hintbus, secret hintbus)",
            s.name(),
            s.addr()
        );
    }
    if args.watch {
        for s in &sims {
            watch(s).await;
        }
    }
    if args.traffic > 0.0 {
        for s in &sims {
            tokio::spawn(traffic(s.clone(), args.extensions.clone(), args.traffic));
        }
    }
    match args.duration {
        Some(d) => {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(d)) => {}
                _ = super::shutdown_signal() => {}
            }
        }
        None => super::shutdown_signal().await,
    }
    for s in &sims {
        s.stop();
    }
    Ok(())
}

fn suffix(i: usize) -> String {
    if i < 26 {
        String::new()
    } else {
        (i / 26).to_string()
    }
}

/// Logs in to a simulated server like any AMI client and prints its lamp changes.
async fn watch(s: &Sim) {
    let mut cfg = ClientConfig::new(s.addr().to_string(), "hintbus", "hintbus");
    cfg.name = s.name();
    let (client, mut events) = Client::start(cfg);
    let name = s.name();
    tokio::spawn(async move {
        let _keep = client;
        while let Some(ev) = events.recv().await {
            match ev {
                ClientEvent::Event(m) => {
                    if let Some(line) = describe(&name, &m) {
                        println!("{line}");
                    }
                }
                ClientEvent::Connected(info) => {
                    println!(
                        "{name}: AMI session up (Asterisk {})",
                        info.asterisk_version.unwrap_or_default()
                    )
                }
                other => println!("{name}: {other:?}"),
            }
        }
    });
}

/// Phones ringing, answering, holding and hanging up at random.
async fn traffic(s: Sim, exts: Vec<String>, rate: f64) {
    let period = Duration::from_secs_f64(1.0 / rate);
    let mut tick = tokio::time::interval(period);
    loop {
        tick.tick().await;
        let (ext, state) = {
            let mut rng = rand::thread_rng();
            let ext = exts.choose(&mut rng).cloned().unwrap_or_default();
            let state = *[
                DeviceState::NotInuse,
                DeviceState::Ringing,
                DeviceState::Inuse,
                DeviceState::Onhold,
                DeviceState::NotInuse,
            ]
            .choose(&mut rng)
            .unwrap_or(&DeviceState::NotInuse);
            (ext, state)
        };
        s.set_device(&format!("SIP/{ext}"), state);
    }
}
