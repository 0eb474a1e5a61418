//! `safemap`: the server (`safemap serve`) and its command-line client.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use safemap_server::cli::{ClientCmd, Conn};
use safemap_server::config::Config;
use safemap_server::{ServeOptions, run};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "safemap",
    version,
    about = "A durable, audited map of JSON values over HTTP, and its client"
)]
struct Cli {
    #[command(flatten)]
    conn: Conn,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the server.
    Serve(ServeArgs),
    #[command(flatten)]
    Client(ClientCmd),
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Pretty,
    Json,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Data directory (created if absent).
    #[arg(long, env = "SAFEMAP_DATA_DIR", default_value = "./safemap-data")]
    data_dir: PathBuf,
    /// Address to listen on.
    #[arg(long, env = "SAFEMAP_LISTEN", default_value = "127.0.0.1:7878")]
    listen: SocketAddr,
    /// TOML configuration file.
    #[arg(long, env = "SAFEMAP_CONFIG")]
    config: Option<PathBuf>,
    /// PEM certificate chain: serve HTTPS (with --tls-key; overrides the config file).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Log format on stderr (filter with RUST_LOG, default info).
    #[arg(long, env = "SAFEMAP_LOG_FORMAT", value_enum, default_value = "pretty")]
    log_format: LogFormat,
}

fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Pretty => b.init(),
        LogFormat::Json => b.json().flatten_event(true).with_current_span(true).init(),
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

fn main() {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            std::process::exit(2);
        }
    };
    let code = match cli.cmd {
        Cmd::Serve(args) => {
            init_tracing(args.log_format);
            rt.block_on(serve(args))
        }
        Cmd::Client(cmd) => rt.block_on(safemap_server::cli::run(cli.conn, cmd)),
    };
    std::process::exit(code);
}

async fn serve(args: ServeArgs) -> i32 {
    let mut config = match &args.config {
        None => Config::default(),
        Some(path) => match Config::load(path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: {e}");
                tracing::error!("{e}");
                return 2;
            }
        },
    };
    if let (Some(c), Some(k)) = (args.tls_cert.clone(), args.tls_key.clone()) {
        config.server.tls = Some((c, k));
    }
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: cannot listen on {}: {e}", args.listen);
            return 2;
        }
    };
    let opts = ServeOptions {
        data_dir: args.data_dir,
        config,
    };
    match run(listener, opts, shutdown_signal()).await {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            tracing::error!("{e}");
            1
        }
    }
}
