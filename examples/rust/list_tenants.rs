//! Lists the tenants of a host: `cargo run -p lobster-core --example list_tenants [CONFIG]`.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let path = std::env::args_os().nth(1).map(std::path::PathBuf::from);
    let result = async {
        let host = lobster_core::Host::open(path.as_deref())?;
        for tenant in host.list().await? {
            println!(
                "{:<20} {:<10} {:<16} {}",
                tenant.name(),
                tenant.status(),
                tenant.guest_ip(),
                tenant.route()
            );
        }
        Ok::<_, lobster_core::Error>(())
    }
    .await;
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error ({}): {}", err.kind(), err.chain());
            std::process::ExitCode::FAILURE
        }
    }
}
