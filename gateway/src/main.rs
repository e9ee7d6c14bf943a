//! `cortex`: the fleet gateway. `cortex serve` runs it; `cortex status`
//! asks a running one how the fleet is.

mod admin;
mod assemble;
mod client_api;
mod demo;
mod echo;
mod error;
mod events;
mod evict;
mod extract;
mod fleet;
mod histograms;
mod load;
mod metrics;
mod neuron_clients;
mod neuron_sse;
mod pin_store;
mod placement;
mod proxy;
mod redact;
mod retry;
mod router;
mod scale_out;
mod serve;
mod server;
mod single_flight;
mod state;
mod status_cmd;
mod waitlist;
mod watch;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cortex", version, about = "cortex fleet gateway")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        /// The gateway config (cortex.toml).
        #[arg(long, short, default_value = "cortex.toml")]
        config: PathBuf,
    },
    /// Start a demo fleet on loopback (a gateway, two neurons, the embedded
    /// model under four ids) and open the console on it; quitting the
    /// console stops the fleet.
    Demo {
        /// Run the fleet without the console until Ctrl-C / SIGTERM,
        /// printing the gateway URL, metrics URL and admin token.
        #[arg(long)]
        headless: bool,
        /// The gateway's port (metrics on the next one); 0 picks free ports.
        #[arg(long, default_value_t = 31313)]
        port: u16,
    },
    /// Print the fleet status of a running gateway.
    Status {
        /// The gateway's URL.
        #[arg(long, env = "CORTEX_GATEWAY", default_value = "http://127.0.0.1:31313")]
        gateway: String,
        /// Admin token.
        #[arg(long, env = "CORTEX_ADMIN_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// Print the status document as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
    /// Print the man page (roff) to install as cortex.1.
    Manpage,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "cortex", &mut std::io::stdout());
            Ok(())
        }
        Command::Manpage => clap_mangen::Man::new(<Cli as clap::CommandFactory>::command())
            .render(&mut std::io::stdout())
            .map_err(anyhow::Error::from),
        Command::Serve { config } => serve::run(&config).await,
        Command::Demo { headless, port } => demo::run(demo::DemoArgs { headless, port }).await,
        Command::Status {
            gateway,
            token,
            json,
        } => status_cmd::run(&gateway, token.as_deref(), json).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cortex: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
