//! `hintbus keygen`: a CURVE key pair for the broker or an agent.

use anyhow::{bail, Context};
use clap::Args;
use nix::unistd::{geteuid, User};
use std::path::PathBuf;

#[derive(Args)]
pub struct KeygenArgs {
    /// Where to write the key pair (mode 0600); the public key goes beside it as <file>.pub.
    #[arg(long, short)]
    out: PathBuf,
    /// Whose key this is: "broker", or the agent's server id (for the printed config lines).
    #[arg(long, default_value = "broker")]
    name: String,
    /// Give both files to this user and its group (as root: `--owner hintbus`), so that the
    /// service, which refuses a secret others can read, can read its own.
    #[arg(long, value_name = "USER")]
    owner: Option<String>,
}

pub fn run(args: KeygenArgs) -> anyhow::Result<()> {
    // Resolved and checked before anything is written: a refusal leaves no key behind that
    // the service could not read.
    let owner = match &args.owner {
        Some(name) => Some(resolve_owner(name)?),
        None => None,
    };
    let keys = proto::auth::KeyPair::generate().map_err(anyhow::Error::msg)?;
    keys.write(&args.out, &args.name).map_err(anyhow::Error::msg)?;
    let pub_path = proto::auth::public_key_path(&args.out);
    if let Some(user) = &owner {
        for path in [&args.out, &pub_path] {
            std::os::unix::fs::chown(path, Some(user.uid.as_raw()), Some(user.gid.as_raw()))
                .with_context(|| format!("{}: chown to {}", path.display(), user.name))?;
        }
    }
    let owned = owner.map(|u| format!(", owner {}", u.name)).unwrap_or_default();
    println!(
        "wrote {} (secret, mode 0600{owned}) and {}",
        args.out.display(),
        pub_path.display()
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

/// The user to give the files to. Only root may give a file away; giving it to oneself is a
/// no-op that anyone may ask for.
fn resolve_owner(name: &str) -> anyhow::Result<User> {
    let user = User::from_name(name)
        .with_context(|| format!("--owner {name}: cannot look the user up"))?
        .ok_or_else(|| anyhow::anyhow!("--owner {name}: no such user"))?;
    let me = geteuid();
    if !me.is_root() && user.uid != me {
        bail!("--owner {name} needs root (only root can give a file to another user): run it with sudo, or run keygen as {name}");
    }
    Ok(user)
}
