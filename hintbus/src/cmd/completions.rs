//! `hintbus completions SHELL`: the shell completion script, printed (the package installs
//! bash's, zsh's and fish's; anyone else can source the output).

use clap::Args;
use clap_complete::Shell;

#[derive(Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    shell: Shell,
}

pub fn run(args: CompletionsArgs, mut cli: clap::Command) -> anyhow::Result<()> {
    clap_complete::generate(args.shell, &mut cli, "hintbus", &mut std::io::stdout());
    Ok(())
}
