use std::io::Write;

use anyhow::Context;
use clap::Parser;
use neuron::node::Neuron;
use neuron::settings::{Cli, Settings};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Some(neuron::settings::Command::Completions { shell }) => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "neuron", &mut std::io::stdout());
            return Ok(());
        }
        Some(neuron::settings::Command::Manpage) => {
            return clap_mangen::Man::new(<Cli as clap::CommandFactory>::command())
                .render(&mut std::io::stdout())
                .context("writing the man page");
        }
        _ => {}
    }
    let settings = Settings::from_cli(&cli)?;
    match cli.command {
        Some(neuron::settings::Command::Bench(args)) => {
            return neuron::bench::run(args, settings).await;
        }
        Some(neuron::settings::Command::Pull { source }) => {
            return neuron::pull::run(source, &settings).await;
        }
        _ => {}
    }
    let listen = settings.listen.clone();
    if settings.token.is_some() {
        tracing::info!("every route but /health requires the neuron token");
    } else if cli.insecure_no_auth && !neuron::settings::is_loopback(&listen) {
        tracing::warn!(
            %listen,
            "INSECURE: no token and a non-loopback address (--insecure-no-auth): anyone who \
             can reach this port can load, unload and run models and read request metadata"
        );
    }
    let preload = settings.preload.clone();
    let neuron = Neuron::start(settings).context("starting the neuron")?;
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    tracing::info!(%addr, name = %neuron.settings.name, "neuron listening");
    // The parent process (demo, tests) reads this line to learn the port.
    cortex_process::announce::listening(addr);
    let _ = std::io::stdout().flush();
    neuron.spawn_stats();
    for (id, source) in preload {
        let n = neuron.clone();
        tokio::spawn(async move {
            if let Err(e) = n.registry.load(&id, &source, None).await {
                tracing::error!(model = %id, error = %e.message, "preload failed");
            }
        });
    }
    let shutdown = neuron.shutdown.clone();
    tokio::spawn(async move {
        cortex_process::shutdown::signal().await;
        tracing::info!("shutdown signal received");
        shutdown.trigger();
    });
    let limits = neuron.settings.server;
    let stop = neuron.shutdown.clone();
    neuron::server::run(listener, neuron::api::router(neuron), limits, stop).await;
    tracing::info!("neuron stopped");
    Ok(())
}
