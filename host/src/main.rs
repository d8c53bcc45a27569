//! The `rulehost` command line: argument parsing, output streams and exit codes. The work
//! itself is in the `rulehost` library.

use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result};
use clap::{Args, CommandFactory, Parser, Subcommand};
use rulehost::alerts::{JsonLines, Output, OutputFormat, Table, WindowSpec};
use rulehost::config::{Flags, LimitSettings, Settings};
use rulehost::eval::{self, Diagnostic, EvalError, EvalOptions, Summary};
use rulehost::events::{Input, InputFormat};
use rulehost::rules::{self, Trust, TrustPolicy};
use rulehost::runtime::{CONTRACT_PACKAGE, CompiledRule, Runtime, implemented_contracts};

/// mimalloc: parsing threads allocate the events that the evaluating thread frees, which
/// glibc's allocator handles slowly.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const EXIT_CODES: &str = "\
Exit codes:
  0  success (with --fail-on-detection: and nothing detected)
  1  --fail-on-detection was given and at least one alert (or match, with --matches) was found
  2  error: bad arguments, an unreadable input or rule, a record rejected under --strict";

const EVAL_EXAMPLES: &str = "\
Examples:
  rulehost eval events.jsonl                      # the bundled Soft Cell rule, alerts as JSON lines
  rulehost eval --rules rules/ a.csv b.json       # every *.wasm rule in rules/
  rulehost eval Sysmon.evtx Security.evtx logs.zip  # raw Windows logs, with process lineage
  rulehost eval --matches --format table events.jsonl
  cat events.jsonl | rulehost eval --window all -   # one window over the whole input
  rulehost eval --strict --fail-on-detection events.jsonl && echo clean";

/// Runs detection rules, compiled to sandboxed WebAssembly components, over process events.
#[derive(Debug, Parser)]
#[command(name = "rulehost", version, after_help = EXIT_CODES)]
struct Cli {
    /// The config file (default: rulehost/config.toml in the user's config directory, if
    /// it exists). Flags override it.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Evaluate rules over event files and print alerts (or matches).
    #[command(after_help = format!("{EVAL_EXAMPLES}\n\n{EXIT_CODES}"))]
    Eval(EvalArgs),
    /// Show what a rule artifact is: metadata, contract version, imports, signatures, digest.
    #[command(
        after_help = "Examples:\n  rulehost inspect target/rules/soft-cell.wasm\n  rulehost inspect --trust platform.pub rule.wasm\n  rulehost inspect --json   # the bundled rule"
    )]
    Inspect(InspectArgs),
    /// Manage signing keys.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Sign a rule artifact (the signature is embedded unless --detached).
    #[command(after_help = SIGN_EXAMPLES)]
    Sign(SignArgs),
    /// Check a rule artifact against a trust policy.
    #[command(after_help = VERIFY_HELP)]
    Verify(VerifyArgs),
    /// Evaluate a stream continuously, swapping rules as their files change.
    #[command(after_help = RUN_HELP)]
    Run(RunArgs),
    /// Show the effective settings.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Scaffold a rule crate that builds with `make rules` as it is.
    #[command(
        after_help = "Examples:\n  rulehost new web-shell-recon                # rules-wasm/web-shell-recon\n  rulehost new my-rule --dir my-rules\n\nThen: make rules && rulehost test target/rules/web-shell-recon.wasm"
    )]
    New(NewArgs),
    /// Run a rule against its test cases and report pass or fail per case.
    #[command(after_help = TEST_HELP)]
    Test(TestArgs),
    /// Sigma rules: compile them into a pack artifact, or check which compile.
    #[command(subcommand)]
    Sigma(SigmaCommand),
    /// Print a shell completion script.
    #[command(
        after_help = "Examples:\n  rulehost completions bash > /etc/bash_completion.d/rulehost\n  rulehost completions zsh > ~/.zfunc/_rulehost"
    )]
    Completions(CompletionsArgs),
    /// Print the man page (roff).
    #[command(after_help = "Examples:\n  rulehost man > rulehost.1 && man ./rulehost.1")]
    Man,
}

#[derive(Debug, Subcommand)]
enum SigmaCommand {
    /// Compile Sigma rules into one pack artifact (a component of contract 0.3.0), to sign and
    /// ship like any rule. Rules the compiler refuses are listed on stderr and left out.
    #[command(
        after_help = "Examples:\n  rulehost sigma compile sigma/rules/windows/process_creation -o process-creation.wasm\n  rulehost sign --key platform.key process-creation.wasm"
    )]
    Compile(SigmaCompileArgs),
    /// List every Sigma rule that cannot be compiled, with the construct and the reason, and
    /// the coverage. Exit 1 when any is refused.
    #[command(after_help = "Examples:\n  rulehost sigma check sigma/rules/ sigma/rules-emerging-threats/")]
    Check(SigmaCheckArgs),
}

#[derive(Debug, clap::Args)]
struct SigmaCompileArgs {
    /// Sigma files (.yml, .yaml) and directories of them (searched recursively).
    #[arg(required = true, value_name = "RULES")]
    rules: Vec<PathBuf>,
    /// Where to write the pack.
    #[arg(short, long, value_name = "FILE")]
    output: PathBuf,
    /// Fail, writing nothing, when any rule is refused.
    #[arg(long)]
    strict: bool,
}

#[derive(Debug, clap::Args)]
struct SigmaCheckArgs {
    /// Sigma files (.yml, .yaml) and directories of them (searched recursively).
    #[arg(required = true, value_name = "RULES")]
    rules: Vec<PathBuf>,
}

const TEST_HELP: &str = "\
Examples:
  rulehost test target/rules/soft-cell.wasm                        # rules-wasm/soft-cell/cases.json
  rulehost test target/rules/my-rule.wasm my-cases.json more.json

Case files are JSON: {\"cases\": [{\"name\", \"events\": [Defender rows], \"expect\":
{\"matches\": [indices], \"alerts\": [{column: value, ...}]}}]} (see the README).

Exit codes:
  0  every case passed
  1  a case failed
  2  error: the rule or a case file could not be read";

#[derive(Debug, Args)]
struct NewArgs {
    /// The rule's crate name (lower case, digits, hyphens).
    name: String,
    /// The folder to create it in.
    #[arg(long, default_value = "rules-wasm", value_name = "DIR")]
    dir: PathBuf,
}

#[derive(Debug, Args)]
struct TestArgs {
    /// The rule component.
    #[arg(value_name = "RULE")]
    rule: PathBuf,
    /// Case files (default: rules-wasm/<RULE's name>/cases.json).
    #[arg(value_name = "CASES")]
    cases: Vec<PathBuf>,
    #[command(flatten)]
    load: LoadArgs,
}

#[derive(Debug, Args)]
struct CompletionsArgs {
    /// The shell.
    shell: clap_complete::Shell,
}

const RUN_HELP: &str = "\
Examples:
  tail -F /var/log/defender.jsonl | rulehost run --rules /etc/rulehost/rules --trust platform.pub -
  rulehost run --rules rules/ --follow events.jsonl --matches
  rulehost run --rules rules/ --stats-interval 60 /run/events.fifo

The rules directory is watched: a new or changed *.wasm is verified, compiled and checked
(and a smoke call made) off the evaluation path, then swapped in between two batches; a
removed file unloads its rule; a candidate that fails any step is reported and the running
version stays. SIGHUP rescans the directory; SIGINT and SIGTERM (and the end of the input)
flush every open window and exit.";

#[derive(Debug, Args)]
struct RunArgs {
    /// The input: a file (with --follow, read as it grows), a named pipe, or `-` for stdin.
    #[arg(value_name = "INPUT", default_value = "-")]
    input: PathBuf,
    /// The rules directory, watched for changes.
    #[arg(long = "rules", value_name = "DIR", required = true)]
    rules: PathBuf,
    /// Follow a file as it grows, like `tail -f`.
    #[arg(long)]
    follow: bool,
    /// Write every match as soon as its batch is evaluated, instead of alerts.
    #[arg(long)]
    matches: bool,
    /// Alert window: tumbling, aligned to the Unix epoch (`30m`, `1h`), or `all`.
    #[arg(long, default_value = "1h", value_name = "DURATION|all")]
    window: WindowSpec,
    /// How far behind the latest event time an event may come and still find its window
    /// open (`30s`, `5m`).
    #[arg(long, default_value = "60s", value_name = "DURATION")]
    allowed_lateness: WindowSpec,
    /// Input format: `jsonl`, `csv`, `xml`, `json` (streams are not sniffed beyond their
    /// first line: `auto` works too).
    #[arg(long, default_value = "auto", value_name = "FORMAT")]
    input_format: InputFormat,
    /// Print each rule's counters every N seconds (and always at exit).
    #[arg(long, value_name = "SECONDS")]
    stats_interval: Option<u64>,
    /// Events per rule call at most.
    #[arg(long, default_value_t = eval::DEFAULT_BATCH_SIZE as u32, value_parser = clap::value_parser!(u32).range(1..=1_000_000), value_name = "N")]
    batch_size: u32,
    /// How long a partial batch waits for more events, in milliseconds.
    #[arg(long, default_value_t = 100, value_name = "MS")]
    max_batch_delay_ms: u64,
    /// Parse every JSON line in full. By default an evtx_dump line that a scan of its
    /// EventID and Channel shows to be of a skipped kind (not Sysmon 1 or Security 4688) is
    /// counted as skipped without a parse, so its JSON syntax is not checked.
    #[arg(long)]
    parse_all: bool,
    /// Threads that read and parse JSON lines, and that evaluate batches [default: the
    /// number of cores]; the output is the same, in the same order, whatever the number.
    #[arg(short = 'j', long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=256))]
    jobs: Option<u32>,
    #[command(flatten)]
    load: LoadArgs,
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Print every setting, its value and where it came from (default, file, flag).
    #[command(
        after_help = "Examples:\n  rulehost config show\n  rulehost --config /etc/rulehost/config.toml config show --deadline-ms 200"
    )]
    Show(ConfigShowArgs),
}

#[derive(Debug, Args)]
struct ConfigShowArgs {
    /// Rule paths, as `eval --rules` takes them.
    #[arg(long = "rules", value_name = "PATH")]
    rules: Vec<PathBuf>,
    #[command(flatten)]
    load: LoadArgs,
}

const SIGN_EXAMPLES: &str = "\
Examples:
  rulehost key generate --name platform                                 # platform.key, platform.pub
  rulehost sign --key platform.key target/rules/soft-cell.wasm          # embedded, in place
  rulehost sign --key secops.key target/rules/soft-cell.wasm            # a second signer
  rulehost sign --key platform.key --detached -o dist/soft-cell.wasm target/rules/soft-cell.wasm";

const VERIFY_HELP: &str = "\
Examples:
  rulehost verify --trust platform.pub target/rules/soft-cell.wasm
  rulehost verify --trust keys/ --trust ci.pub rule.wasm     # any one of these keys
  rulehost verify --trust policy.toml rule.wasm              # named keys, all_of / any_of / minimum

Exit codes:
  0  the artifact satisfies the policy
  1  it does not (unsigned, unknown signer, bad signature, too few signers)
  2  error: a missing file, a bad key or policy";

#[derive(Debug, Subcommand)]
enum KeyCommand {
    /// Generate an Ed25519 key pair: NAME.key (secret, mode 0600) and NAME.pub.
    #[command(
        after_help = "Examples:\n  rulehost key generate --name platform --dir ~/.config/rulehost/keys"
    )]
    Generate(KeyGenerateArgs),
    /// Write a key in another form: PEM, DER, wasmsign2's raw form, or OpenSSH (public).
    #[command(after_help = "Examples:
  rulehost key export platform.key --format wasmsign2 -o platform.wasmsign2.key   # for `wasmsign2 sign -k`
  rulehost key export platform.pub --format wasmsign2 -o platform.wasmsign2.pub   # for `wasmsign2 verify -K`
  rulehost key export platform.key --public --format openssh                      # an authorized_keys line

Every form is read wherever rulehost reads a key (--key, --trust, policy files), as are
OpenSSH secret keys from `ssh-keygen -t ed25519`.")]
    Export(KeyExportArgs),
}

#[derive(Debug, Args)]
struct KeyExportArgs {
    /// The key: public or secret, in any form rulehost reads.
    #[arg(value_name = "KEY")]
    key: PathBuf,
    /// The form to write: `pem`, `der`, `wasmsign2` or `openssh` (public keys only).
    #[arg(long, value_name = "FORMAT")]
    format: rules::signing::KeyFormat,
    /// Write the public half of a secret key.
    #[arg(long)]
    public: bool,
    /// Where to write it (never over an existing file; a secret key gets mode 0600).
    /// Default: stdout, for public keys only.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct KeyGenerateArgs {
    /// The files' name.
    #[arg(long, default_value = "rulehost")]
    name: String,
    /// Where to write them.
    #[arg(long, default_value = ".", value_name = "DIR")]
    dir: PathBuf,
}

#[derive(Debug, Args)]
struct SignArgs {
    /// The secret key (as `rulehost key generate` writes it, or any Ed25519 key in PEM,
    /// DER, OpenSSH or wasmsign2's raw form).
    #[arg(long, value_name = "KEY")]
    key: PathBuf,
    /// The rule artifact.
    #[arg(value_name = "RULE")]
    rule: PathBuf,
    /// Where to write the signed artifact (default: RULE, in place); with --detached, the
    /// signature goes to OUT.sig.
    #[arg(short, long, value_name = "OUT")]
    output: Option<PathBuf>,
    /// Write the signature to OUT.sig and leave the artifact unchanged.
    #[arg(long)]
    detached: bool,
}

#[derive(Debug, Args)]
struct VerifyArgs {
    /// The rule artifact (a detached signature RULE.sig beside it is used).
    #[arg(value_name = "RULE")]
    rule: PathBuf,
    #[command(flatten)]
    trust: TrustArgs,
}

/// Which signers rules need.
#[derive(Debug, Args, Clone)]
struct TrustArgs {
    /// Trusted public keys: key files, directories of *.pub, or a TOML policy file with
    /// named keys and all_of / any_of / minimum. Without it, any rule loads.
    #[arg(long = "trust", value_name = "KEY|DIR|POLICY.toml", help_heading = "Trust")]
    trust: Vec<PathBuf>,
    /// Under a policy, still load artifacts that carry no signature at all (development).
    #[arg(long, help_heading = "Trust")]
    allow_unsigned: bool,
}

#[derive(Debug, Args)]
struct EvalArgs {
    /// Event files: Defender DeviceProcessEvents (JSON rows, streaming records, API
    /// responses, CSV) and Windows Sysmon 1 / Security 4688 (EVTX, EVTX XML, evtx_dump
    /// JSON, Winlogbeat, HELK/NXLog, Sentinel exports), also inside .gz and .zip.
    /// `-` or none: stdin.
    #[arg(value_name = "INPUT")]
    inputs: Vec<PathBuf>,
    /// A rule component, or a directory of them (`*.wasm`); repeatable. Default: the
    /// bundled Soft Cell rule.
    #[arg(long = "rules", value_name = "PATH")]
    rules: Vec<PathBuf>,
    /// Output format: `jsonl` or `table`.
    #[arg(long, default_value = "jsonl", value_name = "FORMAT")]
    format: OutputFormat,
    /// Print every matching event instead of alerts.
    #[arg(long)]
    matches: bool,
    /// Alert window: tumbling, aligned to the Unix epoch (`30m`, `1h`, `1d`), or `all`.
    #[arg(long, default_value = "1h", value_name = "DURATION|all")]
    window: WindowSpec,
    /// Input format: `auto` (from the name, then the content), `jsonl`, `json`, `csv`,
    /// `evtx`, `xml`.
    #[arg(long, default_value = "auto", value_name = "FORMAT")]
    input_format: InputFormat,
    /// Stop with an error at the first record that cannot be read.
    #[arg(long)]
    strict: bool,
    /// Exit with 1 when anything is detected.
    #[arg(long)]
    fail_on_detection: bool,
    /// Events per rule call at most (a file of Defender rows is read in 1 MiB blocks, and
    /// a batch ends with its block).
    #[arg(long, default_value_t = eval::DEFAULT_BATCH_SIZE as u32, value_parser = clap::value_parser!(u32).range(1..=1_000_000), value_name = "N")]
    batch_size: u32,
    /// Threads that read and parse JSON lines, and that evaluate batches [default: the
    /// number of cores]; the output is the same, in the same order, whatever the number.
    #[arg(short = 'j', long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=256))]
    jobs: Option<u32>,
    /// Parse every JSON line in full. By default an evtx_dump line that a scan of its
    /// EventID and Channel shows to be of a skipped kind (not Sysmon 1 or Security 4688) is
    /// counted as skipped without a parse, so its JSON syntax is not checked.
    #[arg(long)]
    parse_all: bool,
    /// Show at most N warnings about rejected records (0: all); the summary counts them all.
    #[arg(long, default_value_t = 100, value_name = "N")]
    max_warnings: u64,
    /// Processes the lineage table (grandparents of Sysmon and 4688 events) holds at most;
    /// the oldest are evicted first.
    #[arg(long, default_value_t = rulehost::events::lineage::DEFAULT_CAPACITY, value_name = "N")]
    lineage_capacity: usize,
    /// Memory, in MiB, for the process creations that the first pass over a Windows log
    /// keeps for evaluation; past it, they are read from the file again (0: always).
    #[arg(long, default_value_t = rulehost::eval::DEFAULT_KEPT_EVENT_BYTES >> 20, value_name = "MIB")]
    kept_events_mib: usize,
    /// Do not print the summary on stderr.
    #[arg(short, long)]
    quiet: bool,
    /// Also write the summary as JSON to FILE: every count, every skipped kind and
    /// rejection reason, every rule's failures (stderr shows the largest kinds only).
    #[arg(long, value_name = "FILE")]
    summary_json: Option<PathBuf>,
    #[command(flatten)]
    load: LoadArgs,
}

/// The sandbox's limits (see README, "Security model"); each overrides the config file.
#[derive(Debug, Args, Default)]
struct LimitArgs {
    /// Linear memory one rule may use, in MiB [default: 64].
    #[arg(long, value_name = "MIB", help_heading = "Sandbox limits")]
    max_memory_mib: Option<u64>,
    /// Wall-clock time one rule call may take, in milliseconds [default: 1000].
    #[arg(long, value_name = "MS", help_heading = "Sandbox limits")]
    deadline_ms: Option<u64>,
    /// Fuel (about one unit per Wasm instruction) one rule call may burn [default: off].
    #[arg(long, value_name = "UNITS", help_heading = "Sandbox limits")]
    fuel: Option<u64>,
    /// Alerts one summarize call may return [default: 10000].
    #[arg(long, value_name = "N", help_heading = "Sandbox limits")]
    max_alerts: Option<usize>,
    /// The largest rule artifact loaded, in MiB [default: 16].
    #[arg(long, value_name = "MIB", help_heading = "Sandbox limits")]
    max_artifact_mib: Option<u64>,
    /// Consecutive failed calls after which a rule is quarantined for the rest of the run
    /// [default: 3].
    #[arg(long, value_name = "N", help_heading = "Sandbox limits")]
    max_failures: Option<u32>,
}

impl LimitArgs {
    fn settings(&self) -> LimitSettings {
        LimitSettings {
            max_memory_mib: self.max_memory_mib,
            deadline_ms: self.deadline_ms,
            fuel: self.fuel,
            max_alerts: self.max_alerts,
            max_artifact_mib: self.max_artifact_mib,
            max_failures: self.max_failures,
        }
    }
}

/// What every command that loads rules takes: the trust policy, the sandbox's limits and
/// the component cache.
#[derive(Debug, Args)]
struct LoadArgs {
    #[command(flatten)]
    trust: TrustArgs,
    #[command(flatten)]
    limits: LimitArgs,
    #[command(flatten)]
    cache: CacheArgs,
}

/// Where compiled components are kept.
#[derive(Debug, Args, Default)]
struct CacheArgs {
    /// Cache compiled components here [default: the user's cache directory].
    #[arg(long, value_name = "DIR", help_heading = "Cache")]
    cache_dir: Option<PathBuf>,
    /// Compile every rule, and cache nothing.
    #[arg(long, help_heading = "Cache")]
    no_cache: bool,
}

/// Resolves the settings from the config file and the flags that override it.
fn settings(config: Option<&Path>, rules: &[PathBuf], load: &LoadArgs) -> Result<Settings> {
    let LoadArgs { trust, limits, cache } = load;
    let flags = Flags {
        rules: rules.to_vec(),
        trust: trust.trust.clone(),
        allow_unsigned: trust.allow_unsigned,
        limits: limits.settings(),
        cache_dir: cache.cache_dir.clone(),
        no_cache: cache.no_cache,
    };
    Ok(Settings::resolve(config, &flags)?)
}

/// The runtime the settings describe.
fn runtime_of(settings: &Settings) -> Result<Runtime> {
    let cache = settings.cache_dir.clone().map(rulehost::runtime::ComponentCache::new);
    Ok(Runtime::with_limits(settings.limits.clone())?.with_cache(cache))
}

/// The trust policy the settings name, announcing --allow-unsigned.
fn trust_of(settings: &Settings) -> Result<Trust> {
    let policy = if settings.trust.is_empty() { None } else { Some(TrustPolicy::load(&settings.trust)?) };
    if settings.allow_unsigned {
        eprintln!(
            "rulehost: warning: --allow-unsigned: rules that carry no signature are loaded; for development only"
        );
    }
    Ok(Trust { policy, allow_unsigned: settings.allow_unsigned })
}

#[derive(Debug, Args)]
struct InspectArgs {
    /// The rule component. Default: the bundled Soft Cell rule.
    #[arg(value_name = "RULE")]
    rule: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    load: LoadArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = cli.config.as_deref();
    let result = match cli.command {
        Command::Eval(args) => run_eval(args, config),
        Command::Inspect(args) => run_inspect(args, config),
        Command::Config(ConfigCommand::Show(args)) => run_config_show(args, config),
        Command::New(args) => run_new(args),
        Command::Run(args) => run_live(args, config),
        Command::Test(args) => run_test(args, config),
        Command::Completions(args) => {
            clap_complete::generate(args.shell, &mut Cli::command(), "rulehost", &mut io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Man => clap_mangen::Man::new(Cli::command())
            .render(&mut io::stdout())
            .map(|()| ExitCode::SUCCESS)
            .map_err(Into::into),
        Command::Sigma(SigmaCommand::Compile(args)) => run_sigma_compile(args),
        Command::Sigma(SigmaCommand::Check(args)) => run_sigma_check(args),
        Command::Key(KeyCommand::Generate(args)) => run_key_generate(args),
        Command::Key(KeyCommand::Export(args)) => run_key_export(args),
        Command::Sign(args) => run_sign(args),
        Command::Verify(args) => run_verify(args, config),
    };
    match result {
        Ok(code) => code,
        Err(error) if is_broken_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("rulehost: error: {error:#}");
            ExitCode::from(2)
        }
    }
}

/// A closed stdout (`rulehost eval ... | head`) is the reader's choice, not a failure.
fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause.downcast_ref::<io::Error>().is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
            || matches!(cause.downcast_ref::<EvalError>(), Some(EvalError::Output(e)) if e.kind() == io::ErrorKind::BrokenPipe)
    })
}

fn load_rules(runtime: &Runtime, paths: &[PathBuf], trust: &Trust) -> Result<Vec<Arc<CompiledRule>>> {
    if paths.is_empty() {
        return Ok(vec![rules::load_bundled(runtime).context("loading the bundled rule")?]);
    }
    let mut left_out = 0;
    let loaded = rules::load_paths_with(runtime, paths, trust, &mut |refused| {
        left_out += 1;
        eprintln!("rulehost: warning: Sigma rule left out: {refused}");
    })?;
    if left_out > 0 {
        eprintln!(
            "rulehost: warning: {} left out (`rulehost sigma check` lists them)",
            plural(left_out, "Sigma rule")
        );
    }
    if loaded.is_empty() {
        anyhow::bail!(
            "no rule found in {}",
            paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        );
    }
    Ok(loaded)
}

fn run_eval(args: EvalArgs, config: Option<&Path>) -> Result<ExitCode> {
    let settings = settings(config, &args.rules, &args.load)?;
    let runtime = runtime_of(&settings)?;
    let trust = trust_of(&settings)?;
    let rules = load_rules(&runtime, &settings.rules, &trust)?;
    let jobs = jobs_or_cores(args.jobs);
    let inputs: Vec<Input> = if args.inputs.is_empty() {
        vec![Input::stdin()]
    } else {
        args.inputs.iter().map(Input::file).collect()
    };
    let inputs: Vec<Input> =
        inputs.into_iter().map(|input| input.with_jobs(jobs).with_parse_all(args.parse_all)).collect();
    let options = EvalOptions {
        window: args.window,
        batch_size: args.batch_size as usize,
        strict: args.strict,
        matches_only: args.matches,
        input_format: args.input_format,
        lineage_capacity: args.lineage_capacity,
        progress: None,
        jobs,
        kept_event_bytes: args.kept_events_mib.saturating_mul(1 << 20),
    };
    let counter = Arc::new(AtomicU64::new(0));
    let progress = if args.quiet { None } else { Progress::start(&inputs, counter.clone()) };
    let options = EvalOptions { progress: progress.as_ref().map(|_| counter.clone()), ..options };
    let stdout = io::stdout();
    let terminal = stdout.is_terminal();
    let stdout = stdout.lock();
    let output: Box<dyn Output> = match args.format {
        OutputFormat::Jsonl => Box::new(JsonLines::new(io::BufWriter::new(stdout))),
        OutputFormat::Table => {
            // For a terminal: fit its width and colour (unless NO_COLOR); for a file or
            // a pipe: every value whole.
            let width = terminal.then(terminal_width).flatten();
            Box::new(Table::new(io::BufWriter::new(stdout)).fit_to(width).colored(use_color(terminal)))
        }
    };
    let mut output = Suspending { inner: output, progress: progress.as_ref().map(|p| p.bar.clone()) };
    let say = |line: String| match &progress {
        Some(progress) => progress.bar.suspend(|| eprintln!("{line}")),
        None => eprintln!("{line}"),
    };
    let mut warnings = 0u64;
    let max_warnings = args.max_warnings;
    let mut diagnose = |diagnostic: Diagnostic<'_>| match diagnostic {
        Diagnostic::Rejected(error) => {
            warnings += 1;
            if max_warnings == 0 || warnings <= max_warnings {
                say(format!("rulehost: warning: {error}"));
            } else if warnings == max_warnings + 1 {
                say("rulehost: warning: more records rejected; the summary counts them (--max-warnings 0 shows all)".into());
            }
        }
        Diagnostic::RuleFailed { error, events } => {
            let lost =
                if error.stage == "summarize" { "matches not summarized" } else { "events not evaluated" };
            say(format!("rulehost: warning: {error}; {events} {lost} by this rule"));
        }
        Diagnostic::Quarantined { rule } => say(format!(
            "rulehost: warning: rule {} {} ({}) quarantined for the rest of the run: {}",
            rule.id,
            rule.version,
            rule.digest,
            rule.quarantined.as_deref().unwrap_or_default()
        )),
        // Bounded inputs close their windows at the end: nothing comes late.
        Diagnostic::Late { .. } => {}
    };
    let result = eval::evaluate(&rules, &inputs, &options, &mut output, &mut diagnose);
    drop(output);
    if let Some(progress) = progress {
        progress.finish(&counter);
    }
    let summary = result?;
    if let Some(path) = &args.summary_json {
        let json = serde_json::to_string_pretty(&summary).context("writing the summary as JSON")?;
        std::fs::write(path, json + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    if !args.quiet {
        print_summary(&summary);
    }
    let detected = if args.matches { summary.matches > 0 } else { summary.alerts > 0 };
    Ok(if args.fail_on_detection && detected { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// `--jobs`, or the number of cores.
fn jobs_or_cores(jobs: Option<u32>) -> usize {
    jobs.map_or_else(|| std::thread::available_parallelism().map_or(1, usize::from), |j| j as usize)
}

/// An output that lifts the progress bar off the terminal while it writes.
struct Suspending {
    inner: Box<dyn Output>,
    progress: Option<indicatif::ProgressBar>,
}

impl Suspending {
    fn quiet<T>(&mut self, write: impl FnOnce(&mut dyn Output) -> T) -> T {
        match self.progress.clone() {
            Some(bar) => bar.suspend(|| write(self.inner.as_mut())),
            None => write(self.inner.as_mut()),
        }
    }
}

impl Output for Suspending {
    fn alert(&mut self, alert: &rulehost::alerts::Alert) -> io::Result<()> {
        self.quiet(|out| out.alert(alert))
    }

    fn matched(&mut self, matched: &rulehost::alerts::Match<'_>) -> io::Result<()> {
        self.quiet(|out| out.matched(matched))
    }

    fn finish(&mut self) -> io::Result<()> {
        self.quiet(|out| out.finish())
    }
}

/// A progress bar on stderr, drawn only when stderr is a terminal: bytes read of the
/// inputs' total, rate and ETA (a spinner with bytes and rate for standard input).
struct Progress {
    bar: indicatif::ProgressBar,
    stop: Arc<std::sync::atomic::AtomicBool>,
    updater: Option<std::thread::JoinHandle<()>>,
}

impl Progress {
    fn start(inputs: &[Input], counter: Arc<AtomicU64>) -> Option<Self> {
        if !io::stderr().is_terminal() {
            return None;
        }
        let total: Option<u64> = inputs.iter().map(Input::size).sum();
        let (bar, template) = match total {
            Some(total) => (
                indicatif::ProgressBar::new(total),
                "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
            ),
            None => (
                indicatif::ProgressBar::new_spinner(),
                "{spinner} [{elapsed_precise}] {bytes} read, {bytes_per_sec}",
            ),
        };
        bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
        if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
            bar.set_style(style);
        }
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (shown, done) = (bar.clone(), stop.clone());
        let updater = std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                shown.set_position(counter.load(Ordering::Relaxed));
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        });
        Some(Self { bar, stop, updater: Some(updater) })
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(updater) = self.updater.take() {
            let _ = updater.join();
        }
        self.bar.finish_and_clear();
    }
}

impl Progress {
    /// Shows the final count before the bar goes.
    fn finish(self, counter: &AtomicU64) {
        self.bar.set_position(counter.load(Ordering::Relaxed));
        drop(self);
    }
}

/// `1 record`, `2 records`, `2 matches`.
fn plural(n: u64, word: &str) -> String {
    match (n, word.ends_with("ch")) {
        (1, _) => format!("{n} {word}"),
        (_, true) => format!("{n} {word}es"),
        (_, false) => format!("{n} {word}s"),
    }
}

/// Skipped kinds the summary line names; past it, the largest of them and how many more.
const SHOWN_SKIPPED_KINDS: usize = 8;

/// The skipped kinds as the summary line gives them: all of them by name when there are
/// few, else the largest and a count of the rest (a folder of EVTX files has 150 kinds).
fn skipped_kinds(summary: &Summary) -> String {
    if summary.skipped.len() <= SHOWN_SKIPPED_KINDS {
        return summary.skipped.iter().map(|(k, n)| format!("{k}: {n}")).collect::<Vec<_>>().join(", ");
    }
    let kinds = summary.skipped_by_count();
    let (shown, rest) = kinds.split_at(SHOWN_SKIPPED_KINDS);
    let mut parts: Vec<String> = shown.iter().map(|(k, n)| format!("{k}: {n}")).collect();
    let records: u64 = rest.iter().map(|(_, n)| n).sum();
    parts.push(format!("{} more kinds: {records}; --summary-json lists all", rest.len()));
    parts.join(", ")
}

fn print_summary(summary: &Summary) {
    let counts = |map: Vec<(String, u64)>| {
        if map.is_empty() {
            String::new()
        } else {
            let parts: Vec<String> = map.into_iter().map(|(k, n)| format!("{k}: {n}")).collect();
            format!(" ({})", parts.join(", "))
        }
    };
    let skipped =
        if summary.skipped.is_empty() { String::new() } else { format!(" ({})", skipped_kinds(summary)) };
    eprintln!(
        "rulehost: {} read: {} evaluated, {} skipped{}, {} rejected{}; {}, {}",
        plural(summary.read, "record"),
        summary.evaluated,
        summary.skipped_total(),
        skipped,
        summary.rejected_total(),
        counts(summary.rejected.iter().map(|(k, n)| (k.to_string(), *n)).collect()),
        plural(summary.matches, "match"),
        plural(summary.alerts, "alert"),
    );
    for rule in summary.rules.iter().filter(|r| r.failures > 0 || r.quarantined.is_some()) {
        let state = match &rule.quarantined {
            Some(reason) => format!("quarantined ({reason})"),
            None => format!("last failure: {}", rule.last_failure.as_deref().unwrap_or("unknown")),
        };
        eprintln!(
            "rulehost: rule {} {} ({}): {}, {} not evaluated, {} not summarized; {state}",
            rule.id,
            rule.version,
            rule.digest,
            plural(rule.failures, "failed call"),
            plural(rule.failed_events, "event"),
            plural(rule.unsummarized_matches, "match"),
        );
    }
}

fn run_inspect(args: InspectArgs, config: Option<&Path>) -> Result<ExitCode> {
    let settings = settings(config, &[], &args.load)?;
    let runtime = runtime_of(&settings)?;
    let trust = trust_of(&settings)?;
    let (rules, signatures) = match &args.rule {
        Some(path) => {
            let rules = rules::load_paths(&runtime, std::slice::from_ref(path), &trust)?;
            let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            let detached = std::fs::read(rules::signing::detached_signature_path(path)).ok();
            (rules, rules::signing::signature_key_ids(&bytes, detached.as_deref()))
        }
        None => (vec![rules::load_bundled(&runtime)?], Vec::new()),
    };
    let mut out = io::stdout().lock();
    match (rules.as_slice(), args.json) {
        ([rule], true) => {
            serde_json::to_writer_pretty(&mut out, &inspect_json(rule, &signatures))?;
            writeln!(out)?;
        }
        ([rule], false) => write_inspect_text(&mut out, rule, &signatures)?,
        (pack, true) => {
            serde_json::to_writer_pretty(&mut out, &inspect_pack_json(pack, &signatures))?;
            writeln!(out)?;
        }
        (pack, false) => write_inspect_pack_text(&mut out, pack, &signatures)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// A pack of many rules: what the artifact is, then each rule's metadata under `rules`.
fn inspect_pack_json(rules: &[Arc<CompiledRule>], signatures: &[String]) -> serde_json::Value {
    let first = inspect_json(&rules[0], signatures);
    let artifact_keys =
        ["artifact", "digest", "size", "contract", "imports", "exports", "signatures", "trusted_signers"];
    let mut object = serde_json::Map::new();
    for key in artifact_keys {
        object.insert(key.into(), first[key].clone());
    }
    let members = rules
        .iter()
        .map(|rule| {
            let mut member = inspect_json(rule, signatures);
            if let Some(member) = member.as_object_mut() {
                member.retain(|key, _| !artifact_keys.contains(&key.as_str()));
            }
            member
        })
        .collect();
    object.insert("rules".into(), serde_json::Value::Array(members));
    serde_json::Value::Object(object)
}

/// A pack of many rules: the artifact, then one line per rule (`--json` has everything).
fn write_inspect_pack_text(
    out: &mut impl Write,
    rules: &[Arc<CompiledRule>],
    signatures: &[String],
) -> io::Result<()> {
    write_artifact_header(out, &rules[0], signatures)?;
    writeln!(out, "rules:         {}", rules.len())?;
    let width = |text: fn(&CompiledRule) -> usize| rules.iter().map(|r| text(r)).max().unwrap_or(0);
    let (id_width, version_width) = (width(|r| r.metadata().id.len()), width(|r| r.metadata().version.len()));
    for rule in rules {
        let m = rule.metadata();
        writeln!(
            out,
            "  {:<id_width$}  {:<version_width$}  {:<13}  {}",
            m.id,
            m.version,
            m.severity.name(),
            m.title
        )?;
    }
    Ok(())
}

fn run_sigma_compile(args: SigmaCompileArgs) -> Result<ExitCode> {
    let started = std::time::Instant::now();
    let compilation = rulehost::sigma::compile_paths(&args.rules)?;
    for refused in &compilation.refused {
        eprintln!("rulehost: warning: left out: {refused}");
    }
    if args.strict && !compilation.refused.is_empty() {
        anyhow::bail!("{} refused; nothing written", plural(compilation.refused.len() as u64, "rule"));
    }
    if compilation.rules.is_empty() {
        anyhow::bail!("no Sigma rule to compile");
    }
    let rules: Vec<_> = compilation.rules.into_iter().map(|(_, rule)| rule).collect();
    let bytes = rulehost::sigma::pack::build(&rules)?;
    std::fs::write(&args.output, &bytes).with_context(|| format!("writing {}", args.output.display()))?;
    eprintln!(
        "rulehost: {}: {} ({} bytes, {}), {} left out, in {:.2} s",
        args.output.display(),
        plural(rules.len() as u64, "rule"),
        bytes.len(),
        rulehost::runtime::Digest::of(&bytes),
        compilation.refused.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

fn run_sigma_check(args: SigmaCheckArgs) -> Result<ExitCode> {
    let compilation = rulehost::sigma::compile_paths(&args.rules)?;
    let mut out = io::stdout().lock();
    let mut by_construct: std::collections::BTreeMap<String, usize> = Default::default();
    for refused in &compilation.refused {
        writeln!(out, "{refused}")?;
        *by_construct.entry(refused.construct()).or_default() += 1;
    }
    let total = compilation.rules.len() + compilation.refused.len();
    let coverage = if total == 0 { 0.0 } else { 100.0 * compilation.rules.len() as f64 / total as f64 };
    writeln!(out, "{} of {} rules compile ({coverage:.2}%)", compilation.rules.len(), total)?;
    for (construct, count) in &by_construct {
        writeln!(out, "  refused for {construct}: {count}")?;
    }
    Ok(if compilation.refused.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn run_key_generate(args: KeyGenerateArgs) -> Result<ExitCode> {
    let key = rules::signing::generate_key(&args.dir, &args.name)?;
    // The secret key is never printed: only where it is.
    println!("secret key: {} (mode 0600; keep it secret)", key.secret.display());
    println!("public key: {}", key.public.display());
    println!("key id:     {}", key.key_id);
    Ok(ExitCode::SUCCESS)
}

fn run_key_export(args: KeyExportArgs) -> Result<ExitCode> {
    use rules::signing::AnyKey;
    let key = rules::signing::load_any_key(&args.key)?;
    let bytes = rules::signing::export_key(&args.key, &key, args.format, args.public)?;
    let secret = matches!(key, AnyKey::Secret(_)) && !args.public;
    match &args.output {
        Some(path) => {
            rules::signing::write_key_file(path, &bytes, secret)?;
            let kind = if secret { "secret key (mode 0600)" } else { "public key" };
            eprintln!("rulehost: wrote the {kind} to {}", path.display());
        }
        // A secret key is never printed.
        None if secret => anyhow::bail!("a secret key is written only to a file: add -o FILE (or --public)"),
        None => std::io::stdout().write_all(&bytes).context("writing the key")?,
    }
    Ok(ExitCode::SUCCESS)
}

fn run_sign(args: SignArgs) -> Result<ExitCode> {
    let key = rules::signing::load_secret_key(&args.key)?;
    let name = args.rule.display().to_string();
    let artifact = std::fs::read(&args.rule).with_context(|| format!("reading {name}"))?;
    let (signed, detached) = rules::signing::sign(&name, &artifact, &key, args.detached)?;
    let output = args.output.unwrap_or_else(|| args.rule.clone());
    let key_id = rules::signing::key_id(&rules::signing::public_key_of(&key));
    match detached {
        Some(signature) => {
            if output != args.rule {
                std::fs::write(&output, &signed).with_context(|| format!("writing {}", output.display()))?;
            }
            let path = rules::signing::detached_signature_path(&output);
            std::fs::write(&path, signature).with_context(|| format!("writing {}", path.display()))?;
            eprintln!("rulehost: signed {name} with key {key_id}: detached signature {}", path.display());
        }
        None => {
            std::fs::write(&output, &signed).with_context(|| format!("writing {}", output.display()))?;
            eprintln!("rulehost: signed {name} with key {key_id}: {}", output.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn run_live(args: RunArgs, config: Option<&Path>) -> Result<ExitCode> {
    use rulehost::rules::watch::{self, DirectoryState, RuleUpdate};
    tracing_subscriber::fmt()
        .with_writer(io::stderr)
        .with_ansi(use_color(io::stderr().is_terminal()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RULEHOST_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let settings = settings(config, std::slice::from_ref(&args.rules), &args.load)?;
    let runtime = runtime_of(&settings)?;
    let trust = trust_of(&settings)?;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let rescan = Arc::new(std::sync::atomic::AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone())?;
    }
    signal_hook::flag::register(signal_hook::consts::SIGHUP, rescan.clone())?;

    let mut state = DirectoryState::default();
    let mut initial = Vec::new();
    for update in watch::rescan(&args.rules, &runtime, &trust, &mut state) {
        match update {
            RuleUpdate::Loaded { path, rules, .. } => {
                match rules.as_slice() {
                    [rule] => {
                        tracing::info!(rule = %rule.metadata().id, version = %rule.metadata().version, digest = %rule.digest(), path = %path.display(), "rule loaded")
                    }
                    many => {
                        tracing::info!(pack = %many[0].artifact(), rules = many.len(), digest = %many[0].digest(), path = %path.display(), "pack loaded")
                    }
                }
                initial.push((path, rules));
            }
            RuleUpdate::Refused { path, reason } => {
                tracing::error!(path = %path.display(), "refused: {reason}")
            }
            RuleUpdate::Removed { .. } => {}
        }
    }
    let (updates_tx, updates_rx) = std::sync::mpsc::channel();
    let _watcher = watch::watch(args.rules.clone(), runtime, trust, state, rescan, updates_tx)
        .with_context(|| format!("watching {}", args.rules.display()))?;
    let input = match (args.input.as_os_str() == "-", args.follow) {
        (true, _) => Input::stdin(),
        (false, true) => Input::follow(&args.input, stop.clone()),
        (false, false) => Input::file(&args.input),
    }
    .with_parse_all(args.parse_all);
    let lateness = match args.allowed_lateness {
        WindowSpec::Every(ms) => std::time::Duration::from_millis(ms as u64),
        WindowSpec::All => anyhow::bail!("--allowed-lateness takes a duration"),
    };
    let options = rulehost::run::RunOptions {
        window: args.window,
        allowed_lateness: lateness,
        batch_size: args.batch_size as usize,
        max_batch_delay: std::time::Duration::from_millis(args.max_batch_delay_ms),
        matches_only: args.matches,
        input_format: args.input_format,
        stats_interval: args.stats_interval.map(std::time::Duration::from_secs),
        lineage_capacity: rulehost::events::lineage::DEFAULT_CAPACITY,
        jobs: jobs_or_cores(args.jobs),
    };
    let mut output = JsonLines::new(io::BufWriter::new(io::stdout().lock()));
    let mut print_stats = |rules: &[rulehost::eval::RuleSummary], last: bool| {
        let when = if last { "at exit" } else { "so far" };
        for r in rules {
            eprintln!(
                "rulehost: stats {when}: rule {} {} ({}): {} events, {}, {}, {}, {} swaps",
                r.id,
                r.version,
                r.digest,
                r.evaluated,
                plural(r.matches, "match"),
                plural(r.alerts, "alert"),
                plural(r.failures, "failure"),
                r.swaps
            );
        }
    };
    let summary =
        rulehost::run::run(initial, input, updates_rx, stop, &options, &mut output, &mut print_stats)?;
    eprintln!(
        "rulehost: {} read: {} evaluated, {} skipped, {} rejected, {} late",
        plural(summary.read, "record"),
        summary.evaluated,
        summary.skipped_total(),
        summary.rejected_total(),
        summary.late
    );
    Ok(ExitCode::SUCCESS)
}

fn run_new(args: NewArgs) -> Result<ExitCode> {
    let files = rulehost::scaffold::new_rule(&args.dir, &args.name)?;
    for file in &files {
        println!("created {}", file.display());
    }
    println!(
        "next: edit {0}/{1}/src/lib.rs, then `make rules` and `rulehost test target/rules/{1}.wasm`",
        args.dir.display(),
        args.name
    );
    Ok(ExitCode::SUCCESS)
}

fn run_test(args: TestArgs, config: Option<&Path>) -> Result<ExitCode> {
    let settings = settings(config, std::slice::from_ref(&args.rule), &args.load)?;
    let runtime = runtime_of(&settings)?;
    let trust = trust_of(&settings)?;
    let rule = rules::load_paths(&runtime, std::slice::from_ref(&args.rule), &trust)?.remove(0);
    let case_files = if args.cases.is_empty() {
        let stem = args.rule.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let default = PathBuf::from("rules-wasm").join(&stem).join("cases.json");
        if !default.is_file() {
            anyhow::bail!("no case file given, and {} does not exist", default.display());
        }
        vec![default]
    } else {
        args.cases.clone()
    };
    let color = use_color(io::stdout().is_terminal());
    let (mut passed, mut failed) = (0, 0);
    let mut out = io::stdout().lock();
    for path in &case_files {
        let file = rulehost::cases::CaseFile::load(path)?;
        writeln!(
            out,
            "{} ({} cases, rule {} {})",
            path.display(),
            file.cases.len(),
            rule.metadata().id,
            rule.metadata().version
        )?;
        for result in rulehost::cases::run(&rule, &file, &path.display().to_string()) {
            if result.passed() {
                passed += 1;
                writeln!(out, "  {} {}", paint("PASS", GREEN, color), result.name)?;
            } else {
                failed += 1;
                writeln!(out, "  {} {}", paint("FAIL", RED, color), result.name)?;
                for difference in &result.differences {
                    writeln!(out, "       {difference}")?;
                }
            }
        }
    }
    writeln!(out, "{passed} passed, {failed} failed")?;
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

const GREEN: &str = "32";
const RED: &str = "31";

/// The terminal's width: asked of the terminal, else `$COLUMNS`.
fn terminal_width() -> Option<usize> {
    terminal_size::terminal_size()
        .map(|(width, _)| width.0 as usize)
        .or_else(|| std::env::var("COLUMNS").ok()?.parse().ok())
        .filter(|&width| width > 0)
}

/// Colour only for a terminal, and never when `NO_COLOR` is set (no-color.org).
fn use_color(is_terminal: bool) -> bool {
    is_terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

fn paint(text: &str, color: &str, enabled: bool) -> String {
    if enabled { format!("\x1b[{color}m{text}\x1b[0m") } else { text.to_owned() }
}

fn run_config_show(args: ConfigShowArgs, config: Option<&Path>) -> Result<ExitCode> {
    let settings = settings(config, &args.rules, &args.load)?;
    let mut out = io::stdout().lock();
    match &settings.file {
        Some(file) => writeln!(out, "config file: {}", file.display())?,
        None => writeln!(
            out,
            "config file: none ({} does not exist)",
            rulehost::config::default_path()
                .map_or_else(|| "no config directory".into(), |p| p.display().to_string())
        )?,
    }
    let rows = settings.describe();
    let width = rows.iter().map(|(name, _, _)| name.len()).max().unwrap_or(0);
    for (name, value, source) in rows {
        writeln!(out, "{name:<width$}  {value}  ({source})")?;
    }
    Ok(ExitCode::SUCCESS)
}

fn run_verify(args: VerifyArgs, config: Option<&Path>) -> Result<ExitCode> {
    let settings = settings(
        config,
        &[],
        &LoadArgs { trust: args.trust.clone(), limits: LimitArgs::default(), cache: CacheArgs::default() },
    )?;
    let trust = trust_of(&settings)?;
    if trust.policy.is_none() {
        anyhow::bail!("verify needs --trust");
    }
    let bytes = std::fs::read(&args.rule).with_context(|| format!("reading {}", args.rule.display()))?;
    match trust.check(&args.rule, &bytes) {
        Ok(signers) if signers.is_empty() => {
            println!("{}: accepted without a signature (--allow-unsigned)", args.rule.display());
            Ok(ExitCode::SUCCESS)
        }
        Ok(signers) => {
            println!("{}: verified: signed by {}", args.rule.display(), signers.join(", "));
            Ok(ExitCode::SUCCESS)
        }
        Err(rulehost::rules::LoadError::Untrusted { artifact, reason, .. }) => {
            println!("{artifact}: refused: {reason}");
            Ok(ExitCode::from(1))
        }
        Err(other) => Err(other.into()),
    }
}

fn inspect_json(rule: &CompiledRule, signatures: &[String]) -> serde_json::Value {
    let m = rule.metadata();
    let info = rule.info();
    serde_json::json!({
        "artifact": rule.artifact(),
        "digest": info.digest.as_str(),
        "size": info.size,
        "contract": format!("{CONTRACT_PACKAGE}@{}", info.contract_version.as_deref().unwrap_or("")),
        "imports": info.imports,
        "exports": info.exports,
        "id": m.id,
        "version": m.version,
        "title": m.title,
        "description": m.description,
        "severity": m.severity.name(),
        "tactics": m.tactics,
        "techniques": m.techniques,
        "coverage": m.coverage.iter().map(|c| c.name()).collect::<Vec<_>>(),
        "reads": m.reads.iter().map(|f| f.name()).collect::<Vec<_>>(),
        "summary_reads": m.summary_reads.iter().map(|f| f.name()).collect::<Vec<_>>(),
        "indicators": m.indicators.iter().map(|i| serde_json::json!({
            "field": i.field.name(), "operator": i.operator.name(), "values": i.values,
        })).collect::<Vec<_>>(),
        "query_period_seconds": m.query_period.as_secs(),
        "query_frequency_seconds": m.query_frequency.as_secs(),
        "signatures": signatures,
        "trusted_signers": rule.signers(),
    })
}

/// What `inspect` says of the artifact, whether it holds one rule or many.
fn write_artifact_header(out: &mut impl Write, rule: &CompiledRule, signatures: &[String]) -> io::Result<()> {
    let info = rule.info();
    let list = |items: &[String]| {
        if items.is_empty() { "(none)".to_owned() } else { items.join(", ") }
    };
    writeln!(out, "artifact:      {}", rule.artifact())?;
    writeln!(out, "digest:        {}", info.digest)?;
    writeln!(out, "size:          {} bytes", info.size)?;
    writeln!(
        out,
        "contract:      {CONTRACT_PACKAGE}@{} (this host: {})",
        info.contract_version.as_deref().unwrap_or("?"),
        implemented_contracts()
    )?;
    let signatures = if signatures.is_empty() {
        "(none)".to_owned()
    } else {
        format!("key ids {}", signatures.join(", "))
    };
    writeln!(out, "signatures:    {signatures}")?;
    if !rule.signers().is_empty() {
        writeln!(out, "trusted:       signed by {}", rule.signers().join(", "))?;
    }
    writeln!(out, "imports:       {}", list(&info.imports))?;
    writeln!(out, "exports:       {}", list(&info.exports))
}

fn write_inspect_text(out: &mut impl Write, rule: &CompiledRule, signatures: &[String]) -> io::Result<()> {
    let m = rule.metadata();
    let list = |items: &[String]| {
        if items.is_empty() { "(none)".to_owned() } else { items.join(", ") }
    };
    let fields =
        |fields: &[rulehost::events::Field]| fields.iter().map(|f| f.name()).collect::<Vec<_>>().join(", ");
    let hours = |d: std::time::Duration| format!("{}s", d.as_secs());
    write_artifact_header(out, rule, signatures)?;
    writeln!(out, "id:            {}", m.id)?;
    writeln!(out, "title:         {}", m.title)?;
    writeln!(out, "version:       {}", m.version)?;
    writeln!(out, "severity:      {}", m.severity)?;
    writeln!(out, "tactics:       {}", list(&m.tactics))?;
    writeln!(out, "techniques:    {}", list(&m.techniques))?;
    writeln!(out, "coverage:      {}", m.coverage.iter().map(|c| c.name()).collect::<Vec<_>>().join("; "))?;
    writeln!(out, "reads:         {}", fields(&m.reads))?;
    writeln!(out, "summary reads: {}", fields(&m.summary_reads))?;
    writeln!(out, "period:        {} (runs every {})", hours(m.query_period), hours(m.query_frequency))?;
    writeln!(out, "indicators:")?;
    for i in &m.indicators {
        writeln!(out, "  {} {} ({})", i.field, i.operator, i.values.join(", "))?;
    }
    writeln!(out, "description:   {}", m.description)?;
    Ok(())
}
