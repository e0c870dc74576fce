//! `hintbus watch`: log in to an Asterisk with the AMI user hintbus will use, and print its
//! device, presence and hint changes. A quick check of host, credentials and read classes.

use super::lamps::describe;
use ami::client::AuthMethod;
use ami::{Client, ClientConfig, ClientEvent, Message};
use clap::Args;

#[derive(Args)]
pub struct WatchArgs {
    /// AMI address, host:port.
    #[arg(long, default_value = "127.0.0.1:5038")]
    addr: String,
    /// manager.conf user.
    #[arg(long, default_value = "hintbus")]
    user: String,
    /// The secret, from the environment (never on the command line, where `ps` shows it):
    /// the variable that also overrides `[ami] secret` of the configuration file.
    #[arg(long, env = "HINTBUS_AMI__SECRET", hide_env_values = true)]
    secret: String,
    /// Send the secret in clear (`Secret:`) instead of the MD5 challenge.
    #[arg(long)]
    plain: bool,
}

pub async fn run(args: WatchArgs) -> anyhow::Result<()> {
    let mut cfg = ClientConfig::new(args.addr.clone(), args.user, args.secret);
    cfg.name = args.addr.clone();
    if args.plain {
        cfg.auth = AuthMethod::Plain;
    }
    let (client, mut events) = Client::start(cfg);
    loop {
        let ev = tokio::select! {
            ev = events.recv() => ev,
            _ = super::shutdown_signal() => break,
        };
        let Some(ev) = ev else { break };
        match ev {
            ClientEvent::Connected(info) => {
                println!(
                    "connected: Asterisk {} (AMI {})",
                    info.asterisk_version.as_deref().unwrap_or("?"),
                    info.ami_version.as_deref().unwrap_or(&info.banner_version)
                );
                if info.has_state_events() {
                    match client.list(Message::action("DeviceStateList")).await {
                        Ok(list) => println!("{} devices in the state cache", list.items.len()),
                        Err(e) => {
                            println!("DeviceStateList failed: {e} (the AMI user needs read=call)")
                        }
                    }
                }
            }
            ClientEvent::Event(m) => {
                if let Some(line) = describe(&args.addr, &m) {
                    println!("{line}");
                }
            }
            ClientEvent::Disconnected { reason } => {
                println!("disconnected: {reason}; reconnecting")
            }
            ClientEvent::Lagged { dropped } => {
                println!("{dropped} events dropped (terminal too slow)")
            }
        }
    }
    client.shutdown();
    Ok(())
}
