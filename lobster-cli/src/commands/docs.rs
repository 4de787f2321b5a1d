//! `lobsterd completions` and `lobsterd man`.

use std::io::Write;
use std::path::Path;

use lobster_core::host;
use lobster_core::Error;

use super::Context;
use crate::args::ShellArg;

pub fn completions(shell: ShellArg) -> Result<(), Error> {
    let script = crate::docs::completion(shell);
    // A closed pipe (`| head`) is not an error worth reporting.
    let _ = std::io::stdout().lock().write_all(&script);
    Ok(())
}

pub fn man(ctx: &Context, dir: &Path) -> Result<(), Error> {
    let pages = crate::docs::man_pages();
    let written = host::write_files(dir, &pages)?;
    ctx.print(&written, || {
        format!("wrote {} man pages into {}", written.len(), dir.display())
    });
    Ok(())
}
