//! `safemap`: the server (`safemap serve`) and its command-line client.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use safemap_server::cli::{ClientCmd, Conn};
use safemap_server::config::{Config, StoreConfig};
use safemap_server::etcd_access::{EtcdAccess, PASSWORD_ENV, Secret};
use safemap_server::etcd_limits::TxnLimits;
use safemap_server::{ServeOptions, run};
use tracing_subscriber::EnvFilter;

/// mimalloc: per-request allocations (JSON values, audit records, headers) took
/// about a fifth of the server's CPU in glibc malloc under durable PUT load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Run the server (boxed: its flags outweigh the client commands).
    Serve(Box<ServeArgs>),
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
    /// Where the data lives: `local` (the data directory) or `etcd` (cluster
    /// mode, cluster.md; needs a binary built with `--features etcd`).
    /// Overrides `[store] kind` of the config file.
    #[arg(long, env = "SAFEMAP_STORE", value_parser = ["local", "etcd"])]
    store: Option<String>,
    /// etcd client URLs, comma-separated (with --store etcd).
    #[arg(long, env = "SAFEMAP_ETCD_ENDPOINTS", value_delimiter = ',')]
    etcd_endpoints: Vec<String>,
    /// Prefix of every etcd key the server touches; ends with '/' (default /safemap/).
    #[arg(long, env = "SAFEMAP_ETCD_PREFIX")]
    etcd_prefix: Option<String>,
    /// CA certificate(s) of etcd's server certificates, PEM: TLS to etcd
    /// (https:// endpoints). Overrides `[store] ca`.
    #[arg(long, env = "SAFEMAP_ETCD_CA")]
    etcd_ca: Option<PathBuf>,
    /// Client certificate chain for etcd (its `--client-cert-auth`), PEM; with --etcd-key.
    #[arg(long, env = "SAFEMAP_ETCD_CERT")]
    etcd_cert: Option<PathBuf>,
    /// Private key of --etcd-cert, PEM.
    #[arg(long, env = "SAFEMAP_ETCD_KEY")]
    etcd_key: Option<PathBuf>,
    /// etcd user; its password is read from the environment variable
    /// SAFEMAP_ETCD_PASSWORD (never from a flag or the config file).
    #[arg(long, env = "SAFEMAP_ETCD_USER")]
    etcd_user: Option<String>,
    /// etcd's --max-txn-ops (default 128; 32 to 1028): a delete plan holds
    /// this minus 28 keys. Overrides `[store] max_txn_ops`.
    #[arg(long, env = "SAFEMAP_ETCD_MAX_TXN_OPS", allow_negative_numbers = true)]
    etcd_max_txn_ops: Option<i64>,
    /// PEM certificate chain: serve HTTPS (with --tls-key; overrides the config file).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Export request spans to this OTLP/HTTP endpoint, e.g.
    /// http://127.0.0.1:4318/v1/traces (needs the `otlp` cargo feature).
    #[arg(long, env = "SAFEMAP_OTLP_ENDPOINT")]
    otlp_endpoint: Option<String>,
    /// Log format on stderr (filter with RUST_LOG, default info).
    #[arg(long, env = "SAFEMAP_LOG_FORMAT", value_enum, default_value = "pretty")]
    log_format: LogFormat,
}

/// What must be flushed at exit.
struct Telemetry {
    #[cfg(feature = "otlp")]
    exporter: Option<safemap_server::otel::Exporter>,
    /// Flushes the log lines still queued for stderr when dropped.
    log_writer: tracing_appender::non_blocking::WorkerGuard,
}

impl Telemetry {
    fn shutdown(self) {
        drop(self.log_writer);
        #[cfg(feature = "otlp")]
        if let Some(e) = self.exporter {
            e.shutdown();
        }
    }
}

fn init_tracing(format: LogFormat, otlp_endpoint: Option<&str>) -> Result<Telemetry, String> {
    use tracing_subscriber::prelude::*;
    use tracing_subscriber::{Layer, Registry};
    let filter = || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    // One log line per request: handlers only queue it; a thread of its own
    // writes what is queued to stderr in 64 KiB writes, flushed whenever the
    // queue is empty (measured: one unbuffered stderr write per line took 18%
    // of the server's CPU under durable PUT load). Not lossy: when the queue
    // is full, handlers wait rather than drop lines.
    let (stderr, log_writer) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("safemap-log")
        .finish(std::io::BufWriter::with_capacity(
            64 * 1024,
            std::io::stderr(),
        ));
    let fmt_layer: Box<dyn Layer<Registry> + Send + Sync> = match format {
        LogFormat::Pretty => tracing_subscriber::fmt::layer()
            .with_writer(stderr.clone())
            .with_ansi(ansi)
            .with_filter(filter())
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_writer(stderr)
            .with_filter(filter())
            .boxed(),
    };
    #[cfg_attr(not(feature = "otlp"), allow(unused_mut))]
    let mut layers = vec![fmt_layer];
    #[cfg(feature = "otlp")]
    let exporter = match otlp_endpoint {
        None => None,
        Some(endpoint) => {
            let (layer, exporter) = safemap_server::otel::init::<Registry>(endpoint)?;
            layers.push(layer.with_filter(filter()).boxed());
            Some(exporter)
        }
    };
    #[cfg(not(feature = "otlp"))]
    if let Some(endpoint) = otlp_endpoint {
        return Err(format!(
            "--otlp-endpoint {endpoint}: this build has no OpenTelemetry export (build with --features otlp)"
        ));
    }
    tracing_subscriber::registry().with(layers).init();
    Ok(Telemetry {
        #[cfg(feature = "otlp")]
        exporter,
        log_writer,
    })
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
        Cmd::Serve(args) => match init_tracing(args.log_format, args.otlp_endpoint.as_deref()) {
            Ok(telemetry) => {
                let code = rt.block_on(serve(*args));
                drop(rt);
                telemetry.shutdown();
                code
            }
            Err(e) => {
                eprintln!("error: {e}");
                2
            }
        },
        Cmd::Client(cmd) => rt.block_on(safemap_server::cli::run(cli.conn, cmd)),
    };
    std::process::exit(code);
}

/// The store from the flags over the config file's `[store]`, its TLS files
/// and etcd user checked (`password`: from `SAFEMAP_ETCD_PASSWORD`).
fn store_of(
    args: &ServeArgs,
    file: &StoreConfig,
    password: Option<Secret>,
) -> Result<StoreConfig, String> {
    let etcd_flags = !args.etcd_endpoints.is_empty()
        || args.etcd_prefix.is_some()
        || args.etcd_ca.is_some()
        || args.etcd_cert.is_some()
        || args.etcd_key.is_some()
        || args.etcd_user.is_some()
        || args.etcd_max_txn_ops.is_some();
    const FLAGS: &str = "--etcd-endpoints, --etcd-prefix, --etcd-ca, --etcd-cert, --etcd-key, --etcd-user and --etcd-max-txn-ops";
    match (args.store.as_deref(), file) {
        (Some("local"), _) if etcd_flags => {
            return Err(format!("{FLAGS} apply only to --store etcd"));
        }
        (Some("local"), _) => return Ok(StoreConfig::Local),
        (None, StoreConfig::Local) if etcd_flags => {
            return Err(format!(
                "{FLAGS} need --store etcd (or [store] kind = \"etcd\")"
            ));
        }
        (None, StoreConfig::Local) => return Ok(StoreConfig::Local),
        _ => {}
    }
    let (endpoints, prefix, access, limits) = match file {
        StoreConfig::Etcd {
            endpoints,
            prefix,
            access,
            limits,
        } => (
            endpoints.clone(),
            Some(prefix.clone()),
            access.clone(),
            *limits,
        ),
        StoreConfig::Local => (
            Vec::new(),
            None,
            EtcdAccess::default(),
            TxnLimits::default(),
        ),
    };
    let limits = match args.etcd_max_txn_ops {
        Some(n) => TxnLimits::new(n)
            .map_err(|e| format!("--etcd-max-txn-ops (or SAFEMAP_ETCD_MAX_TXN_OPS): {e}"))?,
        None => limits,
    };
    let endpoints = if args.etcd_endpoints.is_empty() {
        endpoints
    } else {
        args.etcd_endpoints.clone()
    };
    let access = EtcdAccess {
        ca: args.etcd_ca.clone().or(access.ca),
        cert: args.etcd_cert.clone().or(access.cert),
        key: args.etcd_key.clone().or(access.key),
        user: args.etcd_user.clone().or(access.user),
        password,
    };
    match StoreConfig::etcd(endpoints, args.etcd_prefix.clone().or(prefix))? {
        StoreConfig::Etcd {
            endpoints, prefix, ..
        } => {
            access.check(&endpoints)?;
            Ok(StoreConfig::Etcd {
                endpoints,
                prefix,
                access,
                limits,
            })
        }
        StoreConfig::Local => Ok(StoreConfig::Local),
    }
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
    let password = std::env::var(PASSWORD_ENV).ok().map(Secret::new);
    match store_of(&args, &config.store, password) {
        Ok(store) => config.store = store,
        Err(e) => {
            eprintln!("error: {e}");
            tracing::error!("{e}");
            return 2;
        }
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
