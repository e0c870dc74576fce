//! `hintbus broker`: the central broker, and the agents of its agentless servers.

use crate::config::{self, Loaded, KNOWN_SECTIONS};
use clap::Args;
use std::path::PathBuf;
use std::sync::Arc;
use tracing::{info, warn};

#[derive(Args)]
pub struct BrokerArgs {
    /// The configuration file.
    #[arg(short, long, default_value = "/etc/hintbus/config.ini")]
    config: PathBuf,
    /// Validate the configuration and exit.
    #[arg(long)]
    check: bool,
    /// With --check run as root: the user the service runs as, who must be able to read the
    /// files the configuration names (checked if that user exists; `root` checks nothing more).
    #[arg(long, default_value = config::SERVICE_USER, value_name = "USER")]
    service_user: String,
}

pub async fn run(args: BrokerArgs) -> anyhow::Result<()> {
    let loaded = Loaded::read(&args.config, args.check.then_some(args.service_user.as_str()))?;
    loaded.check_sections(KNOWN_SECTIONS)?;
    let cfg = config::broker(&loaded)?;
    let http = config::http(&loaded, config::BROKER_LISTEN)?;
    // Agentless agents reach the broker like any agent, through its own endpoint.
    let servers = config::agentless(&loaded, &cfg)?;
    let mut warnings = loaded.warnings();
    for a in &servers {
        warnings.extend(super::template_warnings(&format!("server-{}", a.server), a));
    }
    if args.check {
        println!(
            "{}: OK (broker on {}, feed {}, HTTP {}, {} agentless server(s))",
            args.config.display(),
            cfg.listen,
            cfg.feed.as_deref().unwrap_or("off"),
            super::http_line(&http),
            servers.len()
        );
        for a in &servers {
            println!(
                "[server-{}]: Asterisk {} as {}, devices as {}, presence as {}{}",
                a.server,
                a.ami.addr,
                a.ami.username,
                a.device_template,
                a.presence_template,
                super::switches(a)
            );
        }
        super::print_checked_as(&loaded, &args.service_user);
        for w in warnings {
            println!("{w}");
        }
        return Ok(());
    }
    for w in warnings {
        warn!("{}", w.trim_start_matches("warning: "));
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
    let broker = Arc::new(broker);
    let (mut registry, agent_metrics) = super::registry();
    broker.metrics().register(&mut registry);
    let mut agents = Vec::new();
    for mut a in servers {
        a.broker = broker.endpoint().to_string();
        info!(server = %a.server, ami = %a.ami.addr, "agentless server");
        let server = a.server.clone();
        let h = agent::spawn(a).map_err(anyhow::Error::msg)?;
        agent_metrics.add(&server, &h);
        agents.push(h);
    }
    let web = match &http.listen {
        Some(listen) => {
            let app = web::App::new(registry, http.token.clone(), web::Source::Broker(broker.clone()));
            Some(
                web::Server::start(listen, app)
                    .await
                    .map_err(|e| anyhow::anyhow!("{}: [http] {e}", args.config.display()))?,
            )
        }
        None => None,
    };
    super::shutdown_signal().await;
    info!("shutting down");
    if let Some(w) = web {
        w.stop().await;
    }
    for a in agents {
        a.stop().await;
    }
    super::stop_broker(broker).await;
    Ok(())
}
