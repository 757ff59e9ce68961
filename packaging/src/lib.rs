//! The man pages and shell completions of `identity-agent`, `iactl`, `identity-agent-tray` and
//! `cms`, generated from their clap definitions (`agent::cli`, `tray::cli`, `cms::cli`), so
//! they say what `--help` says. The notes each command prints after its options (`Files:`,
//! `Environment:`, `Exit status:`) become man page sections of their own.
#![warn(missing_docs)]

use anyhow::{Context as _, Result};
use clap::CommandFactory;
use clap_complete::Shell;
use clap_mangen::roff::{roman, Roff};
use clap_mangen::Man;
use std::path::Path;

/// A program the packages install: its command line and its man page section.
#[derive(Debug, Clone)]
pub struct Program {
    /// The command line.
    pub command: clap::Command,
    /// `1` for user commands, `8` for services and their administration.
    pub section: &'static str,
    /// Whether the packages ship shell completions for it.
    pub completions: bool,
}

/// The programs: `identity-agent`, `iactl` and `identity-agent-tray` (package identity-agent),
/// `cms` (package identity-agent-cms).
pub fn programs() -> Vec<Program> {
    vec![
        Program {
            command: agent::cli::AgentArgs::command(),
            section: "1",
            completions: false,
        },
        Program {
            command: agent::cli::IactlArgs::command(),
            section: "1",
            completions: true,
        },
        Program {
            command: tray::cli::Cli::command(),
            section: "1",
            completions: false,
        },
        Program {
            command: cms::cli::Cli::command(),
            section: "8",
            completions: false,
        },
    ]
}

/// One section of the notes after the options: its title and its (term, meaning) entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSection {
    /// `FILES`, `ENVIRONMENT`, `EXIT STATUS`.
    pub title: String,
    /// Each term and what it means.
    pub entries: Vec<(String, String)>,
}

/// Reads the notes `--help` prints after the options: `Title:` lines open a section, lines
/// indented by two spaces are terms, lines indented further say what the term before means.
pub fn parse_notes(text: &str) -> Vec<NoteSection> {
    let mut sections: Vec<NoteSection> = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            continue;
        }
        if !line.starts_with(' ') {
            sections.push(NoteSection {
                title: line.trim_end_matches(':').to_uppercase(),
                entries: Vec::new(),
            });
            continue;
        }
        let Some(section) = sections.last_mut() else {
            continue;
        };
        if line.starts_with("   ") {
            if let Some((_, meaning)) = section.entries.last_mut() {
                if !meaning.is_empty() {
                    meaning.push(' ');
                }
                meaning.push_str(line.trim());
            }
        } else {
            section
                .entries
                .push((line.trim().to_owned(), String::new()));
        }
    }
    sections
}

/// The man page of `command` (a subcommand's page is named `parent-sub`), with the notes as
/// sections of their own.
pub fn man_page(command: &clap::Command, section: &str) -> Result<Vec<u8>> {
    let man = Man::new(command.clone())
        .section(section)
        .manual("Identity Agent")
        .source(format!("identity-agent {}", env!("CARGO_PKG_VERSION")));
    let mut page = Vec::new();
    man.render_title(&mut page)?;
    man.render_name_section(&mut page)?;
    man.render_synopsis_section(&mut page)?;
    man.render_description_section(&mut page)?;
    if command.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(&mut page)?;
    }
    if command.has_subcommands() {
        man.render_subcommands_section(&mut page)?;
    }
    let notes = command
        .get_after_long_help()
        .or_else(|| command.get_after_help())
        .map(|n| parse_notes(&n.to_string()))
        .unwrap_or_default();
    let mut roff = Roff::default();
    for note in notes {
        roff.control("SH", [note.title.as_str()]);
        for (term, meaning) in note.entries {
            roff.control("TP", []);
            roff.text([roman(term)]);
            roff.text([roman(meaning)]);
        }
    }
    roff.to_writer(&mut page)?;
    if command.get_version().is_some() {
        man.render_version_section(&mut page)?;
    }
    Ok(page)
}

/// Every man page of `program`: its own and one per subcommand (`iactl-login.1`, …), as
/// (file name, contents).
pub fn man_pages(program: &Program) -> Result<Vec<(String, Vec<u8>)>> {
    let mut pages = Vec::new();
    let mut command = program.command.clone();
    command.build();
    collect_pages(&command, program.section, None, &mut pages)?;
    Ok(pages)
}

fn collect_pages(
    command: &clap::Command,
    section: &str,
    parent: Option<&str>,
    pages: &mut Vec<(String, Vec<u8>)>,
) -> Result<()> {
    let name = match parent {
        Some(parent) => format!("{parent}-{}", command.get_name()),
        None => command.get_name().to_owned(),
    };
    let named = command.clone().name(name.clone());
    pages.push((format!("{name}.{section}"), man_page(&named, section)?));
    for sub in command.get_subcommands() {
        if sub.get_name() == "help" {
            continue;
        }
        collect_pages(sub, section, Some(&name), pages)?;
    }
    Ok(())
}

/// The completion script of `command` for `shell`, with the file name Debian installs it
/// under (`iactl`, `_iactl`, `iactl.fish`).
pub fn completion(command: &clap::Command, shell: Shell) -> (String, Vec<u8>) {
    let name = command.get_name().to_owned();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command.clone(), &name, &mut script);
    let file = match shell {
        Shell::Zsh => format!("_{name}"),
        Shell::Fish => format!("{name}.fish"),
        _ => name,
    };
    (file, script)
}

/// The shells the packages ship completions for.
pub const SHELLS: [Shell; 3] = [Shell::Bash, Shell::Zsh, Shell::Fish];

/// Writes every man page to `out/man/` and every completion to `out/completions/<shell>/`.
pub fn write_all(out: &Path) -> Result<()> {
    let man_dir = out.join("man");
    std::fs::create_dir_all(&man_dir).with_context(|| format!("creating {}", man_dir.display()))?;
    for program in programs() {
        for (file, page) in man_pages(&program)? {
            let path = man_dir.join(file);
            std::fs::write(&path, page).with_context(|| format!("writing {}", path.display()))?;
        }
        if !program.completions {
            continue;
        }
        for shell in SHELLS {
            let dir = out.join("completions").join(shell.to_string());
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            let (file, script) = completion(&program.command, shell);
            let path = dir.join(file);
            std::fs::write(&path, script).with_context(|| format!("writing {}", path.display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page_of(name: &str) -> String {
        let program = programs()
            .into_iter()
            .find(|p| p.command.get_name() == name)
            .unwrap();
        String::from_utf8(man_page(&program.command, program.section).unwrap()).unwrap()
    }

    #[test]
    fn the_notes_become_man_sections() {
        let notes = parse_notes(&agent::cli::notes_help(agent::cli::IACTL_NOTES));
        let titles: Vec<&str> = notes.iter().map(|n| n.title.as_str()).collect();
        assert_eq!(titles, ["FILES", "ENVIRONMENT", "EXIT STATUS"]);
        let exit = &notes[2].entries;
        assert_eq!(exit.len(), 5);
        assert_eq!(exit[3].0, "3");
        assert_eq!(exit[3].1, "the agent is not running");
    }

    #[test]
    fn each_page_has_what_help_has() {
        let iactl = page_of("iactl");
        for wanted in [
            ".SH FILES",
            ".SH ENVIRONMENT",
            ".SH \"EXIT STATUS\"",
            "IDENTITY_AGENT_SOCKET",
            "doctor",
        ] {
            assert!(iactl.contains(wanted), "iactl.1 lacks {wanted}:\n{iactl}");
        }
        let agent = page_of("identity-agent");
        for wanted in ["RUST_LOG", "config.toml", "\\-\\-foreground", ".SH FILES"] {
            assert!(
                agent.contains(wanted),
                "identity-agent.1 lacks {wanted}:\n{agent}"
            );
        }
        let cms = page_of("cms");
        assert!(cms.contains("CMS_DATA_DIR"), "{cms}");
        assert!(cms.starts_with(".ie") || cms.contains(".TH cms 8"), "{cms}");
    }

    #[test]
    fn every_subcommand_has_a_page_and_every_shell_a_completion() {
        let iactl = programs().remove(1);
        let pages = man_pages(&iactl).unwrap();
        let names: Vec<&str> = pages.iter().map(|(n, _)| n.as_str()).collect();
        for wanted in [
            "iactl.1",
            "iactl-login.1",
            "iactl-role.1",
            "iactl-role-select.1",
        ] {
            assert!(names.contains(&wanted), "{names:?}");
        }
        for shell in SHELLS {
            let (file, script) = completion(&iactl.command, shell);
            let script = String::from_utf8(script).unwrap();
            assert!(script.contains("cancel-card"), "{file}: {script}");
        }
    }
}
