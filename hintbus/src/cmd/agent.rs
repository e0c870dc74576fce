//! `hintbus agent`: one Asterisk's agent.

use crate::config::{self, Loaded, KNOWN_SECTIONS};
use clap::Args;
use std::path::PathBuf;
use tracing::warn;

#[derive(Args)]
pub struct AgentArgs {
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

pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    let loaded = Loaded::read(&args.config, args.check.then_some(args.service_user.as_str()))?;
    loaded.check_sections(KNOWN_SECTIONS)?;
    let cfg = config::agent(&loaded)?;
    let http = config::http(&loaded, config::AGENT_LISTEN)?;
    let mut warnings = loaded.warnings();
    warnings.extend(super::template_warnings("agent", &cfg));
    if args.check {
        println!(
            "{}: OK (server {}, Asterisk {} as {}, broker {}, HTTP {}, devices as {}, presence as {}{})",
            args.config.display(),
            cfg.server,
            cfg.ami.addr,
            cfg.ami.username,
            cfg.brokers()
                .iter()
                .map(|(e, _)| e.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            super::http_line(&http),
            cfg.device_template,
            cfg.presence_template,
            super::switches(&cfg)
        );
        super::print_checked_as(&loaded, &args.service_user);
        for w in warnings {
            println!("{w}");
        }
        return Ok(());
    }
    for w in warnings {
        warn!("{}", w.trim_start_matches("warning: "));
    }
    let server = cfg.server.clone();
    let handle = agent::spawn(cfg).map_err(anyhow::Error::msg)?;
    let (registry, agent_metrics) = super::registry();
    agent_metrics.add(&server, &handle);
    let web = match &http.listen {
        Some(listen) => {
            let status = super::agent_status(&handle);
            let app = web::App::new(registry, http.token.clone(), web::Source::Agent(status));
            Some(
                web::Server::start(listen, app)
                    .await
                    .map_err(|e| anyhow::anyhow!("{}: [http] {e}", args.config.display()))?,
            )
        }
        None => None,
    };
    super::shutdown_signal().await;
    if let Some(w) = web {
        w.stop().await;
    }
    handle.stop().await;
    Ok(())
}
