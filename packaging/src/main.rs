//! `ia-docs OUT`: writes the man pages (`OUT/man/`) and shell completions
//! (`OUT/completions/<shell>/`) the Debian packages install.

use anyhow::Context as _;
use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let out: PathBuf = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .context("usage: ia-docs OUT_DIR")?;
    packaging::write_all(&out)
}
