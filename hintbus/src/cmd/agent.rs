//! `hintbus agent`: one Asterisk's agent.

use crate::config::{self, Loaded, KNOWN_SECTIONS};
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct AgentArgs {
    /// The configuration file.
    #[arg(short, long, default_value = "/etc/hintbus/config.ini")]
    config: PathBuf,
    /// Validate the configuration and exit.
    #[arg(long)]
    check: bool,
}

pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    let loaded = Loaded::read(&args.config)?;
    loaded.check_sections(KNOWN_SECTIONS)?;
    let cfg = config::agent(&loaded)?;
    if args.check {
        println!(
            "{}: OK (server {}, Asterisk {} as {}, broker {}, devices as {}, presence as {})",
            args.config.display(),
            cfg.server,
            cfg.ami.addr,
            cfg.ami.username,
            cfg.broker,
            cfg.device_template,
            cfg.presence_template
        );
        for w in super::template_warnings("agent", &cfg) {
            println!("{w}");
        }
        return Ok(());
    }
    let handle = agent::spawn(cfg).map_err(anyhow::Error::msg)?;
    super::shutdown_signal().await;
    handle.stop().await;
    Ok(())
}
