//! Shell completions and man pages, generated from the same clap
//! definitions as the parser (so they cannot drift from it), and where a
//! distribution expects them installed.

use std::path::PathBuf;

use clap::CommandFactory;
use clap_complete::Shell;

use crate::args::{Cli, ShellArg};

/// The completion script for `shell`.
pub fn completion(shell: ShellArg) -> Vec<u8> {
    let shell = match shell {
        ShellArg::Bash => Shell::Bash,
        ShellArg::Zsh => Shell::Zsh,
        ShellArg::Fish => Shell::Fish,
    };
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "lobsterd", &mut out);
    out
}

/// Every man page as (file name, roff): `lobsterd.1` and one
/// `lobsterd-<command>.1` per command.
pub fn man_pages() -> Vec<(String, Vec<u8>)> {
    let mut cli = Cli::command().disable_help_subcommand(true);
    cli.build();
    let commands = std::iter::once(cli.clone()).chain(cli.get_subcommands().cloned());
    commands
        .map(|command| {
            let man = clap_mangen::Man::new(command);
            let mut roff = Vec::new();
            man.render(&mut roff)
                .expect("rendering into memory cannot fail");
            (man.get_filename(), roff)
        })
        .collect()
}

/// The completions and man pages at the paths Debian-like distributions
/// read them from (`init` installs those whose directory exists).
pub fn system_files() -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = vec![
        (
            PathBuf::from("/usr/share/bash-completion/completions/lobsterd"),
            completion(ShellArg::Bash),
        ),
        (
            PathBuf::from("/usr/share/zsh/vendor-completions/_lobsterd"),
            completion(ShellArg::Zsh),
        ),
        (
            PathBuf::from("/usr/share/fish/vendor_completions.d/lobsterd.fish"),
            completion(ShellArg::Fish),
        ),
    ];
    let man1 = PathBuf::from("/usr/share/man/man1");
    files.extend(
        man_pages()
            .into_iter()
            .map(|(name, roff)| (man1.join(name), roff)),
    );
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The commands a user can type (clap's own `help` aside).
    fn commands() -> Vec<String> {
        Cli::command()
            .get_subcommands()
            .map(|c| c.get_name().to_owned())
            .collect()
    }

    #[test]
    fn completions_of_every_shell_name_every_command() {
        for shell in [ShellArg::Bash, ShellArg::Zsh, ShellArg::Fish] {
            let script = String::from_utf8(completion(shell)).unwrap();
            assert!(script.contains("lobsterd"), "{shell:?}");
            for command in commands() {
                assert!(script.contains(&command), "{shell:?} lacks {command}");
            }
        }
        // Each in its shell's own form.
        let bash = String::from_utf8(completion(ShellArg::Bash)).unwrap();
        assert!(bash.contains("complete -F _lobsterd"), "{bash}");
        let zsh = String::from_utf8(completion(ShellArg::Zsh)).unwrap();
        assert!(zsh.starts_with("#compdef lobsterd"), "{zsh}");
        let fish = String::from_utf8(completion(ShellArg::Fish)).unwrap();
        assert!(fish.contains("complete -c lobsterd"), "{fish}");
        assert!(fish.contains("-l purge"), "uninit's --purge is offered");
    }

    #[test]
    fn there_is_a_man_page_per_command_in_roff() {
        let pages = man_pages();
        let mut names: Vec<String> = pages.iter().map(|(n, _)| n.clone()).collect();
        let mut want = vec!["lobsterd.1".to_owned()];
        want.extend(commands().iter().map(|c| format!("lobsterd-{c}.1")));
        names.sort();
        want.sort();
        assert_eq!(names, want);
        for (name, roff) in &pages {
            let roff = String::from_utf8(roff.clone()).unwrap();
            let title = name.trim_end_matches(".1");
            assert!(
                roff.contains(&format!("\n.TH {title} 1 ")),
                "{name}: {roff}"
            );
            assert!(
                roff.contains(".SH NAME") && roff.contains(".SH SYNOPSIS"),
                "{name}"
            );
        }
        let (_, uninit) = pages
            .iter()
            .find(|(n, _)| n == "lobsterd-uninit.1")
            .unwrap();
        let uninit = String::from_utf8_lossy(uninit);
        assert!(uninit.contains("purge"), "{uninit}");
        let (_, main) = pages.iter().find(|(n, _)| n == "lobsterd.1").unwrap();
        assert!(String::from_utf8_lossy(main).contains("lobsterd\\-uninit(1)"));
    }
}
