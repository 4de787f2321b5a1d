//! Test fixtures as a command, for the binding tests (Python, Go) that cannot
//! call lobster-core's allocator themselves:
//!
//! ```text
//! lobster-testkit seed CONFIG [--status STATUS] NAME...
//! ```
//!
//! allocates one tenant per name through the real allocator (in order, with
//! the config's tenant defaults), sets each to STATUS (default `running`; no
//! VM) and prints the records as the registry holds them, a JSON array.

use std::path::Path;
use std::process::ExitCode;

use lobster_core::config::Config;
use lobster_core::store::TenantStatus;

const USAGE: &str = "usage: lobster-testkit seed CONFIG [--status STATUS] NAME...";

fn main() -> ExitCode {
    match run(std::env::args().skip(1).collect()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("lobster-testkit: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Vec<String>) -> Result<(), String> {
    let [command, config, rest @ ..] = &args[..] else {
        return Err(USAGE.into());
    };
    if command != "seed" {
        return Err(USAGE.into());
    }
    let (status, names) = match rest {
        [flag, status, names @ ..] if flag == "--status" => (status.as_str(), names),
        names => ("running", names),
    };
    let status: TenantStatus =
        serde_json::from_value(status.into()).map_err(|e| format!("status {status:?}: {e}"))?;
    let config = Config::load(Path::new(config)).map_err(|e| e.to_string())?;
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let records =
        lobster_testkit::registry::seed(&config, &names, status).map_err(|e| e.chain())?;
    println!(
        "{}",
        serde_json::to_string(&records).map_err(|e| e.to_string())?
    );
    Ok(())
}
