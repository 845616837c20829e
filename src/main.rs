//! The `postfix-agentx` command line.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use postfix_agentx::config::{Config, DEFAULT_CONFIG_PATH};
use postfix_agentx::mib::text::mib_text;
use postfix_agentx::refusal;
use postfix_agentx::snmp::Oid;
use std::path::PathBuf;
use std::process::ExitCode;

/// SNMP AgentX subagent for Postfix: mail log counters, queue depth,
/// process metrics and probes, served under POSTFIX-MIB through net-snmp's
/// snmpd. Needs no root and no SSH.
#[derive(Parser)]
#[command(name = "postfix-agentx", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent: connect to snmpd's AgentX socket and serve POSTFIX-MIB.
    Run {
        /// Configuration file.
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Run even as root (the agent needs no root; see the README).
        #[arg(long)]
        allow_root: bool,
    },
    /// Check a configuration file and print the effective settings.
    CheckConfig {
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Collect once and print every value the agent would serve.
    Dump {
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Count a whole mail log with the agent's own parser and print every counter.
    Parse {
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// Syslog names of Postfix instances besides `postfix*` (repeatable).
        #[arg(long = "syslog-name", value_name = "NAME")]
        syslog_names: Vec<String>,
        /// Log files; `-` reads standard input; `.gz` files are decompressed.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Print the POSTFIX-MIB module text, optionally re-rooted under your own OID.
    Mib {
        /// Root OID for the module (default: agentx.oid_root of the config, or
        /// the provisional default).
        #[arg(long, value_name = "OID")]
        root: Option<String>,
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Print the man page (roff) generated from this command line, or write
    /// one page per subcommand into a directory (for packaging).
    #[command(hide = true)]
    Man {
        /// Write postfix-agentx.1 and postfix-agentx-SUBCOMMAND.1 here.
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Format {
    Table,
    Json,
}

/// Loads the configuration; any problem with it is permanent (exit 78).
fn load_config(path: &Option<PathBuf>) -> Result<Config> {
    match path {
        Some(p) => Config::load(p, true),
        None => Config::load(std::path::Path::new(DEFAULT_CONFIG_PATH), false),
    }
    .map_err(refusal::into_config_error)
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("POSTFIX_AGENTX_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    match execute(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("postfix-agentx: {e:#}");
            // The one place that turns a refusal into EX_CONFIG, which the
            // systemd unit's RestartPreventExitStatus= names.
            if refusal::is_config_error(&e) {
                ExitCode::from(refusal::EX_CONFIG)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// Writes command output to stdout. A closed pipe (`... | head`) is not an
/// error: the reader has what it wanted.
fn emit(text: String) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(e).context("write to standard output")
        }
        _ => Ok(()),
    }
}

fn execute(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Run { config, allow_root } => {
            let config = load_config(&config)?;
            postfix_agentx::daemon::run(config, allow_root)
        }
        Command::CheckConfig { config } => {
            let config = load_config(&config)?;
            let text = toml::to_string_pretty(&config).context("render configuration")?;
            emit(format!(
                "# configuration is valid; effective settings:\n{text}\n"
            ))
        }
        Command::Dump { config, format } => {
            let config = load_config(&config)?;
            let view = postfix_agentx::daemon::collect_once(&config)?;
            let root = config.oid_root().map_err(refusal::into_config_error)?;
            let nodes =
                postfix_agentx::mib::names::mib_nodes(postfix_agentx::mib::text::MIB_TEXT, &root);
            emit(match format {
                Format::Table => postfix_agentx::dump::render_table(&view, &nodes),
                Format::Json => {
                    serde_json::to_string_pretty(&postfix_agentx::dump::render_json(&view, &nodes))
                        .context("render JSON")?
                        + "\n"
                }
            })
        }
        Command::Parse {
            format,
            syslog_names,
            files,
        } => {
            let counters = postfix_agentx::sources::log::parse_paths(&files, &syslog_names)?;
            let json = postfix_agentx::sources::log::counters_to_json(&counters);
            emit(match format {
                Format::Json => serde_json::to_string_pretty(&json).context("render JSON")? + "\n",
                Format::Table => postfix_agentx::dump::render_flat(&json),
            })
        }
        Command::Mib { root, config } => {
            let root = match root {
                Some(r) => Oid::parse(&r).map_err(anyhow::Error::msg)?,
                None => load_config(&config)?
                    .oid_root()
                    .map_err(refusal::into_config_error)?,
            };
            emit(mib_text(&root).map_err(anyhow::Error::msg)?)
        }
        Command::Man { out_dir } => {
            let command = <Cli as clap::CommandFactory>::command();
            match out_dir {
                Some(dir) => clap_mangen::generate_to(command, &dir)
                    .with_context(|| format!("write man pages to {}", dir.display())),
                None => {
                    let mut page = Vec::new();
                    clap_mangen::Man::new(command)
                        .render(&mut page)
                        .context("render the man page")?;
                    emit(String::from_utf8_lossy(&page).into_owned())
                }
            }
        }
    }
}
