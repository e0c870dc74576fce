//! `hintbus demo`: a broker, three simulated Asterisk servers and their agents in one
//! process, phones changing state at random, and every server's lamps side by side.

use agent::AgentConfig;
use ami::{ClientConfig, DeviceState};
use broker::{Broker, BrokerConfig};
use clap::Args;
use rand::seq::SliceRandom;
use rand::Rng;
use sim::{Sim, SimConfig};
use std::time::Duration;

#[derive(Args)]
pub struct DemoArgs {
    /// Phone state changes per second, across all servers.
    #[arg(long, default_value_t = 2.0)]
    rate: f64,
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long)]
    duration: Option<u64>,
    /// Where the web board, metrics and status are served (`off`: nowhere).
    #[arg(long, default_value = crate::config::BROKER_LISTEN, value_name = "HOST:PORT")]
    http: String,
}

const SERVERS: [(&str, [&str; 3]); 3] = [
    ("a", ["100", "101", "102"]),
    ("b", ["200", "201", "202"]),
    ("c", ["300", "301", "302"]),
];

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.rate > 0.0 && args.rate.is_finite(),
        "--rate must be a positive number"
    );
    let broker = tokio::task::spawn_blocking(|| {
        Broker::start(BrokerConfig {
            listen: "tcp://127.0.0.1:*".into(),
            feed: Some("tcp://127.0.0.1:*".into()),
            ..BrokerConfig::default()
        })
    })
    .await?
    .map_err(anyhow::Error::msg)?;
    let broker = std::sync::Arc::new(broker);
    let (mut registry, agent_metrics) = super::registry();
    broker.metrics().register(&mut registry);
    let all: Vec<&str> = SERVERS.iter().flat_map(|(_, e)| e.iter().copied()).collect();
    let mut sims = Vec::new();
    let mut agents = Vec::new();
    for (name, exts) in SERVERS {
        let sim = Sim::start(SimConfig::federated(name, &exts, &all)).await?;
        let mut ami = ClientConfig::new(sim.addr().to_string(), "hintbus", "hintbus");
        ami.name = name.into();
        let h = agent::spawn(AgentConfig::new(name, ami, broker.endpoint())).map_err(anyhow::Error::msg)?;
        agent_metrics.add(name, &h);
        agents.push(h);
        sims.push(sim);
    }
    let web = if args.http.eq_ignore_ascii_case("off") {
        None
    } else {
        let app = web::App::new(registry, None, web::Source::Broker(broker.clone()));
        Some(
            web::Server::start(&args.http, app)
                .await
                .map_err(|e| anyhow::anyhow!("--http: {e}"))?,
        )
    };
    println!(
        "broker {}  (state feed for observers: {})",
        broker.endpoint(),
        broker.feed_endpoint().unwrap_or("-")
    );
    if let Some(w) = &web {
        println!("board: http://{}/  (metrics: /metrics, status: /api/status)", w.addr());
    }
    for s in &sims {
        println!(
            "simulated Asterisk {} on {}  (AMI user hintbus/hintbus)",
            s.name(),
            s.addr()
        );
    }
    println!("\nEvery server has the shared hint `exten => N,hint,SIP/N&Custom:SIP/N` for all nine extensions.");
    println!("Each row is one server's view; ● in use  ◎ ringing  ◐ on hold  ○ idle  · unknown\n");
    println!("{}", header(&all));

    let period = Duration::from_secs_f64(1.0 / args.rate);
    let mut traffic = tokio::time::interval(period);
    let mut view = tokio::time::interval(Duration::from_millis(250));
    let mut last = String::new();
    let stop = async {
        match args.duration {
            Some(d) => tokio::time::sleep(Duration::from_secs(d)).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = traffic.tick() => {
                let (si, ext, state) = {
                    let mut rng = rand::thread_rng();
                    let si = rng.gen_range(0..SERVERS.len());
                    let ext = *SERVERS[si].1.choose(&mut rng).unwrap_or(&"100");
                    let state = *[DeviceState::NotInuse, DeviceState::Ringing, DeviceState::Inuse, DeviceState::Onhold, DeviceState::NotInuse]
                        .choose(&mut rng)
                        .unwrap_or(&DeviceState::NotInuse);
                    (si, ext, state)
                };
                sims[si].set_device(&format!("SIP/{ext}"), state);
            }
            _ = view.tick() => {
                let rows = table(&sims, &all);
                if rows != last {
                    println!("{rows}");
                    last = rows;
                }
            }
            _ = super::shutdown_signal() => break,
            _ = &mut stop => break,
        }
    }
    if let Some(w) = web {
        w.stop().await;
    }
    for a in agents {
        a.stop().await;
    }
    super::stop_broker(broker).await;
    Ok(())
}

fn header(all: &[&str]) -> String {
    let mut s = String::from("time          on ");
    for e in all {
        s.push_str(&format!("{e:>4}"));
    }
    s
}

fn table(sims: &[Sim], all: &[&str]) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let t = now.as_secs() % 86_400;
    let clock = format!(
        "{:02}:{:02}:{:02}.{:03}",
        t / 3600,
        t % 3600 / 60,
        t % 60,
        now.subsec_millis()
    );
    let mut rows = Vec::new();
    for s in sims {
        let mut row = format!("{clock}  {:>2} ", s.name());
        for e in all {
            let lamp = match s.hint_status(e, "default").map(|st| st.text()) {
                Some("InUse") | Some("Busy") => "●",
                Some("Ringing") | Some("InUse&Ringing") => "◎",
                Some("Hold") | Some("InUse&Hold") => "◐",
                Some("Idle") => "○",
                _ => "·",
            };
            row.push_str(&format!("{lamp:>4}"));
        }
        rows.push(row);
    }
    rows.join("\n")
}
