//! `hintbus keygen`: a CURVE key pair for the broker or an agent.

use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct KeygenArgs {
    /// Where to write the key pair (mode 0600); the public key goes beside it as <file>.pub.
    #[arg(long, short)]
    out: PathBuf,
    /// Whose key this is: "broker", or the agent's server id (for the printed config lines).
    #[arg(long, default_value = "broker")]
    name: String,
}

pub fn run(args: KeygenArgs) -> anyhow::Result<()> {
    let keys = proto::auth::KeyPair::generate().map_err(anyhow::Error::msg)?;
    keys.write(&args.out, &args.name).map_err(anyhow::Error::msg)?;
    println!(
        "wrote {} (secret, mode 0600) and {}",
        args.out.display(),
        args.out.with_extension("pub").display()
    );
    println!("public key: {}", keys.public);
    if args.name == "broker" {
        println!("\nbroker config:  [broker] secret_key_file = {}", args.out.display());
        println!("agent configs:  [agent] broker_public_key = {}", keys.public);
    } else {
        println!("\nagent config:   [agent] secret_key_file = {}", args.out.display());
        println!("broker config:  [agents] {} = {}", args.name, keys.public);
    }
    Ok(())
}
