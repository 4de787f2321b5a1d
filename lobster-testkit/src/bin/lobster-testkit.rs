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
//!
//! ```text
//! lobster-testkit list-latency CONFIG CALLS
//! ```
//!
//! prints the microseconds one `Host::list` takes from Rust, the baseline
//! of scripts/bench-bindings.sh: the fastest of 10 batches (mean per call
//! within a batch), as the binding benches measure theirs.

use std::path::Path;
use std::process::ExitCode;

use lobster_core::config::Config;
use lobster_core::store::TenantStatus;

const USAGE: &str = "usage: lobster-testkit seed CONFIG [--status STATUS] NAME...
       lobster-testkit list-latency CONFIG CALLS";

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
    if command == "list-latency" {
        let calls = match rest {
            [calls] => calls.parse().map_err(|e| format!("CALLS {calls:?}: {e}"))?,
            _ => return Err(USAGE.into()),
        };
        return list_latency(Path::new(config), calls);
    }
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

/// Prints the microseconds per `Host::list` on the host of `config`.
fn list_latency(config: &Path, calls: u32) -> Result<(), String> {
    const BATCHES: u32 = 10;
    let host = lobster_core::Host::open(Some(config)).map_err(|e| e.chain())?;
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    let list = || runtime.block_on(host.list()).map_err(|e| e.chain());
    list()?; // warm up
    let batch = (calls / BATCHES).max(1);
    let mut best = f64::INFINITY;
    for _ in 0..BATCHES {
        let start = std::time::Instant::now();
        for _ in 0..batch {
            std::hint::black_box(list()?);
        }
        best = best.min(start.elapsed().as_secs_f64() / f64::from(batch));
    }
    println!("{:.1}", best * 1e6);
    Ok(())
}
