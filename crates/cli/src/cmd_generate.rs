//! `restash generate` and `restash version`: restic's commands about the program itself.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args as ClapArgs;
use clap_complete::Shell;

use crate::global::GlobalOpts;

/// `restash generate`
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// Write man pages to DIRECTORY.
    #[arg(long = "man", value_name = "DIRECTORY")]
    pub man: Option<PathBuf>,
    /// Write bash completion FILE (`-` for stdout).
    #[arg(long = "bash-completion", value_name = "FILE")]
    pub bash: Option<PathBuf>,
    /// Write fish completion FILE (`-` for stdout).
    #[arg(long = "fish-completion", value_name = "FILE")]
    pub fish: Option<PathBuf>,
    /// Write zsh completion FILE (`-` for stdout).
    #[arg(long = "zsh-completion", value_name = "FILE")]
    pub zsh: Option<PathBuf>,
    /// Write powershell completion FILE (`-` for stdout).
    #[arg(long = "powershell-completion", value_name = "FILE")]
    pub powershell: Option<PathBuf>,
}

/// restic 0.18's `generate`: man pages and completion files for the whole command line,
/// made from the same definition that parses it, so they never drift from the flags.
pub fn run(g: &GlobalOpts, a: Args, mut cmd: clap::Command) -> anyhow::Result<()> {
    let shells = [
        (Shell::Bash, &a.bash),
        (Shell::Fish, &a.fish),
        (Shell::Zsh, &a.zsh),
        (Shell::PowerShell, &a.powershell),
    ];
    if a.man.is_none() && shells.iter().all(|(_, f)| f.is_none()) {
        bail!("nothing to do, please specify at least one output file/dir");
    }
    let say = |text: String| {
        if !g.quiet && !g.json {
            println!("{text}");
        }
    };
    if let Some(dir) = &a.man {
        say(format!("writing man pages to directory {}", dir.display()));
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating man page directory {}", dir.display()))?;
        clap_mangen::generate_to(cmd.clone(), dir)
            .with_context(|| format!("writing man pages to {}", dir.display()))?;
    }
    let to_stdout = shells
        .iter()
        .filter(|(_, f)| f.as_deref() == Some(Path::new("-")))
        .count();
    if to_stdout > 1 {
        bail!(
            "the generate command can generate shell completions to stdout for single shell only"
        );
    }
    for (shell, file) in shells {
        let Some(file) = file else { continue };
        let name = shell.to_string();
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut cmd, "restash", &mut buf);
        if file.as_os_str() == "-" {
            std::io::stdout().write_all(&buf)?;
        } else {
            // restic announces each file, never the one going to stdout.
            say(format!(
                "writing {name} completion file to {}",
                file.display()
            ));
            std::fs::write(file, &buf)
                .with_context(|| format!("writing {name} completion to {}", file.display()))?;
        }
    }
    Ok(())
}

/// restic's `version`: the version, the compiler and the platform, in Go's names
/// (`linux/amd64`) so scripts that parse restic's line parse ours.
pub fn version(g: &GlobalOpts) -> anyhow::Result<()> {
    let rustc = env!("RESTASH_RUSTC_VERSION")
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64",
        other => other,
    };
    let os = std::env::consts::OS;
    let version = env!("CARGO_PKG_VERSION");
    if g.json {
        let v = serde_json::json!({
            "message_type": "version",
            "version": version,
            "rust_version": rustc,
            "go_os": os,
            "go_arch": arch,
        });
        println!("{v}");
    } else {
        println!("restash {version} compiled with {rustc} on {os}/{arch}");
    }
    Ok(())
}
