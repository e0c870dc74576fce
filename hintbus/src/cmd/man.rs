//! `hintbus man DIR` (hidden): the manual pages, generated from the same clap definitions as
//! `--help`, so that they cannot drift from the binary. deploy/package.sh runs it.

use clap::Args;
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct ManArgs {
    /// Directory to write hintbus.1 and one hintbus-<command>.1 per subcommand into.
    dir: PathBuf,
}

pub fn run(args: ManArgs, cli: clap::Command) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.dir)?;
    let mut cli = cli.disable_help_subcommand(true);
    cli.build();
    // clap_mangen::generate_to, but with "hintbus 0.1.0" in every page's footer (subcommands
    // have no version of their own, and their pages would say only "keygen").
    let source = format!("hintbus {}", env!("CARGO_PKG_VERSION"));
    fn write(cmd: clap::Command, dir: &Path, source: &str) -> std::io::Result<()> {
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned() {
            write(sub, dir, source)?;
        }
        clap_mangen::Man::new(cmd).source(source).generate_to(dir)?;
        Ok(())
    }
    write(cli, &args.dir, &source)?;
    Ok(())
}
