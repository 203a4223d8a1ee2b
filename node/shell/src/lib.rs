//! Shell completion scripts and man pages generated from a clap command, so they always match
//! the commands and flags a binary accepts: one implementation for `twinctl`,
//! `twinledger-node` and `twinledger-devnet` (their `completions <SHELL>` and `man --out DIR`).

/// The shells `completions` writes a script for.
pub use clap_complete::Shell;

/// The completion script of `cmd` for `shell`, as text.
pub fn completions(mut cmd: clap::Command, shell: Shell) -> String {
    let name = cmd.get_name().to_owned();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, name, &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// One man page (section 1) per command and subcommand of `cmd`, rendered in memory: the file
/// name (`twinctl.1`, `twinctl-consent-grant.1`, ...) and its roff text, which starts with its
/// `.TH` line. Every page names the root command and its version as its source. Hidden
/// subcommands and clap's `help` subcommand have no page.
pub fn man_pages(cmd: clap::Command) -> Result<Vec<(String, Vec<u8>)>, std::io::Error> {
    fn render(
        cmd: clap::Command,
        source: &str,
        pages: &mut Vec<(String, Vec<u8>)>,
    ) -> Result<(), std::io::Error> {
        let subs: Vec<clap::Command> = cmd
            .get_subcommands()
            .filter(|s| !s.is_hide_set())
            .cloned()
            .collect();
        let man = clap_mangen::Man::new(cmd).source(source);
        let mut text = Vec::new();
        man.render(&mut text)?;
        pages.push((man.get_filename(), title_first(text)));
        for sub in subs {
            render(sub, source, pages)?;
        }
        Ok(())
    }
    let mut cmd = cmd.disable_help_subcommand(true);
    // Building names every subcommand after its path (`twinctl-consent-grant`).
    cmd.build();
    let source = format!(
        "{} {}",
        cmd.get_name(),
        cmd.get_version().unwrap_or_default()
    );
    let mut pages = Vec::new();
    render(cmd, source.trim_end(), &mut pages)?;
    Ok(pages)
}

/// `page` with its `.TH` line first: the roff crate puts the definition of its apostrophe
/// string (`.ie \n(.g .ds Aq ...`) before it, which is valid roff but not where man(7) and
/// `man -l` readers expect the title. The other lines keep their order (the definition still
/// comes before any use).
fn title_first(page: Vec<u8>) -> Vec<u8> {
    let text = String::from_utf8_lossy(&page);
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    match lines.iter().position(|l| l.starts_with(".TH ")) {
        Some(i) if i > 0 => {
            let mut out = String::with_capacity(text.len());
            out.push_str(lines[i]);
            for (j, l) in lines.iter().enumerate() {
                if j != i {
                    out.push_str(l);
                }
            }
            out.into_bytes()
        }
        _ => page,
    }
}

/// Writes [`man_pages`] of `cmd` into the existing directory `dir` (existing pages of the same
/// name are replaced) and returns the files written. A missing `dir`, or one that is not a
/// directory, is refused before anything is written.
pub fn write_man_pages(
    cmd: clap::Command,
    dir: &std::path::Path,
) -> Result<Vec<std::path::PathBuf>, std::io::Error> {
    let meta = std::fs::metadata(dir)?;
    if !meta.is_dir() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotADirectory,
            "not a directory",
        ));
    }
    let pages = man_pages(cmd)?;
    let mut written = Vec::with_capacity(pages.len());
    for (name, text) in pages {
        let path = dir.join(name);
        std::fs::write(&path, text)?;
        written.push(path);
    }
    Ok(written)
}
