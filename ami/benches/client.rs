//! Pipelined Setvar round trips through the AMI client against the simulated Asterisk over
//! loopback TCP: the path an agent's mirror writes take.
//! Run: `cargo bench -p ami --bench client`

use ami::{Client, ClientConfig, ClientEvent, Message};
use sim::{Sim, SimConfig};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let sim = Sim::start(SimConfig::fixture_server()).await.unwrap();
    let cfg = ClientConfig::new(sim.addr().to_string(), "broker", "s3cret");
    let (client, mut events) = Client::start(cfg);
    while !matches!(events.recv().await, Some(ClientEvent::Connected(_))) {}
    tokio::spawn(async move { while events.recv().await.is_some() {} });

    for in_flight in [1usize, 16, 256] {
        let n = if in_flight == 1 { 5_000 } else { 50_000 };
        let limit = Arc::new(Semaphore::new(in_flight));
        let t = Instant::now();
        let mut tasks = Vec::with_capacity(n);
        for i in 0..n {
            let permit = limit.clone().acquire_owned().await.unwrap();
            let c = client.clone();
            tasks.push(tokio::spawn(async move {
                let started = Instant::now();
                let state = if i % 2 == 0 { "INUSE" } else { "NOT_INUSE" };
                c.action(
                    Message::action("Setvar")
                        .with("Variable", format!("DEVICE_STATE(Custom:b{})", i % 1000))
                        .with("Value", state),
                )
                .await
                .unwrap();
                drop(permit);
                started.elapsed()
            }));
        }
        let mut lat = Vec::with_capacity(n);
        for t in tasks {
            lat.push(t.await.unwrap());
        }
        let secs = t.elapsed().as_secs_f64();
        lat.sort();
        println!(
            "Setvar through client+simulator, {in_flight:>3} in flight: {:8.0} actions/s  p50 {:>6.0} µs  p99 {:>6.0} µs  max {:>6.0} µs",
            n as f64 / secs,
            pct(&lat, 0.5).as_secs_f64() * 1e6,
            pct(&lat, 0.99).as_secs_f64() * 1e6,
            lat.last().unwrap().as_secs_f64() * 1e6
        );
    }
}
