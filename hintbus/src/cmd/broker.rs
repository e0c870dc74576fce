//! `hintbus broker`: the central broker, and the agents of its agentless servers.

use crate::config::{self, Loaded, KNOWN_SECTIONS};
use clap::Args;
use std::path::PathBuf;
use tracing::info;

#[derive(Args)]
pub struct BrokerArgs {
    /// The configuration file.
    #[arg(short, long, default_value = "/etc/hintbus/config.ini")]
    config: PathBuf,
    /// Validate the configuration and exit.
    #[arg(long)]
    check: bool,
}

pub async fn run(args: BrokerArgs) -> anyhow::Result<()> {
    let loaded = Loaded::read(&args.config)?;
    loaded.check_sections(KNOWN_SECTIONS)?;
    let cfg = config::broker(&loaded)?;
    // Agentless agents reach the broker like any agent, through its own endpoint.
    let servers = config::agentless(&loaded, &cfg.listen)?;
    if args.check {
        println!(
            "{}: OK (broker on {}, feed {}, {} agentless server(s))",
            args.config.display(),
            cfg.listen,
            cfg.feed.as_deref().unwrap_or("off"),
            servers.len()
        );
        for a in &servers {
            for w in super::template_warnings(&format!("server-{}", a.server), a) {
                println!("{w}");
            }
        }
        return Ok(());
    }
    // With CURVE, agentless agents authenticate like any agent: a key pair each, made now and
    // allowed for their server id only.
    let mut cfg = cfg;
    let mut servers = servers;
    if let Some((keys, allow)) = cfg.curve.as_mut() {
        for a in servers.iter_mut() {
            let k = proto::auth::KeyPair::generate().map_err(anyhow::Error::msg)?;
            allow.insert(k.public.clone(), a.server.clone());
            a.curve = Some((k, keys.public.clone()));
        }
    }
    let broker = broker::Broker::start(cfg).map_err(|e| anyhow::anyhow!("{}: [broker] {e}", args.config.display()))?;
    let mut agents = Vec::new();
    for mut a in servers {
        a.broker = broker.endpoint().to_string();
        info!(server = %a.server, ami = %a.ami.addr, "agentless server");
        agents.push(agent::spawn(a).map_err(anyhow::Error::msg)?);
    }
    super::shutdown_signal().await;
    info!("shutting down");
    for a in agents {
        a.stop().await;
    }
    tokio::task::spawn_blocking(move || broker.stop()).await?;
    Ok(())
}
