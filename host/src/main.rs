//! The `rulehost` command line: argument parsing, output streams and exit codes. The work
//! itself is in the `rulehost` library.

use std::io;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory, Parser, Subcommand};
use rulehost::alerts::WindowSpec;
use rulehost::config::LimitSettings;
use rulehost::eval::{self, EvalError};
use rulehost::events::InputFormat;
use rulehost::rules;
use rulehost::sinks::OutputFormat;

/// mimalloc: parsing threads allocate the events that the evaluating thread frees, which
/// glibc's allocator handles slowly.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod cli;

const EXIT_CODES: &str = "\
Exit codes:
  0  success (with --fail-on-detection: and nothing detected)
  1  --fail-on-detection was given and at least one alert (or match, with --matches) was found
  2  error: bad arguments, an unreadable input or rule, a record rejected under --strict";

/// A duration that may be zero (`--allowed-lateness`, `--max-clock-skew`).
fn duration_or_zero(text: &str) -> Result<std::time::Duration, String> {
    rulehost::alerts::parse_duration(text, true)
}

/// A duration longer than zero (an interval, a timeout).
fn positive_duration(text: &str) -> Result<std::time::Duration, String> {
    rulehost::alerts::parse_duration(text, false)
}

const EVAL_EXAMPLES: &str = "\
Examples:
  rulehost eval events.jsonl                      # the bundled Soft Cell rule, alerts as JSON lines
  rulehost eval --rules rules/ a.csv b.json       # every *.wasm rule in rules/, and its Sigma rules
  rulehost eval --rules sigma/rules/windows/process_creation/ logs/  # Sigma YAML, compiled into a pack
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
    /// Push a rule artifact to an OCI registry (and its detached signature as a referrer).
    #[command(after_help = PUSH_HELP)]
    Push(PushArgs),
    /// Pull a rule artifact from an OCI registry into the local store (and a directory).
    #[command(after_help = PULL_HELP)]
    Pull(PullArgs),
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
    /// Compile Sigma rules into one pack artifact (a component of contract 0.4.0), to sign and
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
  rulehost run --rules oci://registry.example.com/detect/soft-cell:stable --trust platform.pub -

The rules directory is watched: a new or changed *.wasm is verified, compiled and checked
(and a smoke call made) off the evaluation path, then swapped in between two batches; a
removed file unloads its rule; a candidate that fails any step is reported and the running
version stays. Its Sigma files (*.yml, *.yaml, searched recursively) make one pack: a
changed one is compiled again and the pack swapped the same way; a file that no longer
compiles is reported, and its last version that compiled stays in the pack. A registry tag
(--rules oci://...) is asked for its digest every --poll-interval: a new digest is pulled,
verified and swapped in the same way; a registry that is down, or a candidate that fails,
is logged and the running version stays. SIGHUP rescans the directory (or asks the
registry now); SIGINT and SIGTERM (and the end of the input) flush every open window and
exit.";

#[derive(Debug, Args)]
struct RunArgs {
    /// The input: a file (with --follow, read as it grows), a named pipe, or `-` for stdin.
    #[arg(value_name = "INPUT", default_value = "-")]
    input: PathBuf,
    /// The rules directory (its `*.wasm`, and its Sigma files searched recursively), watched
    /// for changes; or oci://HOST/REPO:TAG, followed (see --poll-interval).
    #[arg(long = "rules", value_name = "DIR|oci://REF", required = true)]
    rules: PathBuf,
    /// Follow a file as it grows, like `tail -F`: read on after it is rotated (renamed and
    /// created again) or truncated.
    #[arg(long)]
    follow: bool,
    /// Write every match as soon as its batch is evaluated, instead of alerts.
    #[arg(long)]
    matches: bool,
    /// Alert window: tumbling, aligned to the Unix epoch (`30m`, `1h`), or `all`.
    #[arg(long, default_value = "1h", value_name = "DURATION|all")]
    window: WindowSpec,
    #[command(flatten)]
    window_bounds: WindowBoundArgs,
    /// How far behind the latest event time an event may come and still find its window
    /// open (`30s`, `5m`, `0s`): a later one is late, still evaluated, and its matches make
    /// an alert of their own that says `"Late": true`.
    #[arg(long, default_value = "60s", value_name = "DURATION", value_parser = duration_or_zero)]
    allowed_lateness: std::time::Duration,
    /// How far ahead of this host's clock an event's time may be and still close windows
    /// (`5m`): an event further ahead (a device's broken clock, a forged record) is
    /// evaluated and counted as ahead, and would otherwise make every later event late.
    #[arg(long, default_value = "5m", value_name = "DURATION", value_parser = duration_or_zero)]
    max_clock_skew: std::time::Duration,
    /// With `--rules oci://REPO:TAG`: how often the tag is asked for its digest (`60s`,
    /// `5m`); a new digest is pulled, verified and swapped in.
    #[arg(long, default_value = "60s", value_name = "DURATION", value_parser = positive_duration)]
    poll_interval: std::time::Duration,
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
    /// Parse every JSON line and render every EVTX record in full. By default an evtx_dump
    /// line, or a binary EVTX record, whose EventID and Channel show it to be of a skipped
    /// kind (not Sysmon 1 or Security 4688) is counted as skipped without a parse, so its
    /// JSON syntax (or the rest of its binary XML) is not checked.
    #[arg(long)]
    parse_all: bool,
    /// Threads that read and parse inputs, evaluate batches and summarize the windows that
    /// close together [default: the number of cores]; the output is the same, in the same
    /// order, whatever the number.
    #[arg(short = 'j', long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=256))]
    jobs: Option<u32>,
    /// Write the output to FILE (created, or emptied) instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Read from a Kafka topic as a member of a consumer group (--group) instead of INPUT:
    /// kafka://BROKER[,BROKER]/TOPIC. Offsets are committed once what their messages led
    /// to is written by the sink.
    #[arg(long, value_name = "kafka://BROKERS/TOPIC", help_heading = "Kafka")]
    source: Option<String>,
    /// The consumer group of --source.
    #[arg(long, value_name = "ID", default_value = "rulehost", help_heading = "Kafka")]
    group: String,
    /// Produce alerts (or matches) to a Kafka topic instead of stdout:
    /// kafka://BROKER[,BROKER]/TOPIC (idempotent producer, acks from all replicas; alerts
    /// keyed by their id).
    #[arg(long, value_name = "kafka://BROKERS/TOPIC", help_heading = "Kafka")]
    sink: Option<String>,
    /// With --source: event time is that of the least advanced partition assigned (each
    /// advances on its own), and a partition that delivers nothing for this long stops
    /// holding it back (`30s`, `5m`).
    #[arg(long, default_value = "60s", value_name = "DURATION", value_parser = positive_duration, help_heading = "Kafka")]
    idle_timeout: std::time::Duration,
    /// A librdkafka property for the Kafka clients, KEY=VALUE; repeatable (e.g.
    /// security.protocol=SASL_SSL, sasl.mechanism=PLAIN, sasl.username=$ConnectionString,
    /// sasl.password=Endpoint=sb://...: Azure Event Hubs).
    #[arg(long = "kafka-option", value_name = "KEY=VALUE", help_heading = "Kafka")]
    kafka_options: Vec<String>,
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

const PUSH_HELP: &str = "\
Examples:
  rulehost push target/rules/soft-cell.wasm oci://registry.example.com/detect/soft-cell:1.0.0
  rulehost push --key platform.key rule.wasm oci://127.0.0.1:5000/detect/rule:1   # signed as it goes
  rulehost push --insecure-registry 127.0.0.1:5000 rule.wasm oci://127.0.0.1:5000/detect/rule:latest

The artifact is an OCI image manifest in the CNCF Wasm layout: config
application/vnd.wasm.config.v0+json (the component's exports and imports), one
application/wasm layer, annotations with the rule's id, version, title and contract. A
detached signature (RULE.wasm.sig beside the file, or made with --key) is pushed as a
referrer of the manifest, listed under the sha256-<hex> tag where the registry has no
referrers API. Prints the manifest's digest.

Credentials: RULEHOST_REGISTRY_USERNAME and RULEHOST_REGISTRY_PASSWORD, else the docker
config.json ($DOCKER_CONFIG or ~/.docker: auths, credHelpers, credsStore); a registry that
asks for a bearer token gets one for them.";

const PULL_HELP: &str = "\
Examples:
  rulehost pull oci://registry.example.com/detect/soft-cell:1.0.0 -o rules/
  rulehost pull --trust platform.pub oci://127.0.0.1:5000/detect/rule@sha256:9f86d0...
  rulehost eval --rules oci://registry.example.com/detect/soft-cell:1.0.0 events.jsonl
  rulehost eval --offline --rules oci://registry.example.com/detect/soft-cell:1.0.0 events.jsonl

A pulled artifact is kept by digest in the store (the cache directory's oci/): a reference
pinned by digest never goes to the network twice, and --offline uses only the store (copy it
to an air-gapped host). The layer is checked against the manifest's digest, and with --trust
the signature against the policy, before anything else reads it.";

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
    #[command(flatten)]
    registry: RegistryArgs,
}

/// How rules are fetched from OCI registries (`oci://` rule paths).
#[derive(Debug, Args, Clone, Default)]
struct RegistryArgs {
    /// Use only the local store for `oci://` rules: no network.
    #[arg(long, help_heading = "Registry")]
    offline: bool,
    /// Reach this registry (`host[:port]`) over plain HTTP; repeatable. Others use TLS.
    #[arg(long = "insecure-registry", value_name = "HOST", help_heading = "Registry")]
    insecure_registry: Vec<String>,
    /// Trust this certificate authority (PEM) for registries, besides the system's.
    #[arg(long = "registry-ca", value_name = "FILE", help_heading = "Registry")]
    registry_ca: Vec<PathBuf>,
}

#[derive(Debug, Args)]
struct PushArgs {
    /// The rule component (or pack) to push.
    #[arg(value_name = "RULE")]
    rule: PathBuf,
    /// Where: oci://HOST[:PORT]/REPOSITORY:TAG.
    #[arg(value_name = "REFERENCE")]
    reference: String,
    /// Sign it with this secret key (detached) and push the signature with it.
    #[arg(long, value_name = "KEY")]
    key: Option<PathBuf>,
    #[command(flatten)]
    registry: RegistryArgs,
}

#[derive(Debug, Args)]
struct PullArgs {
    /// What: oci://HOST[:PORT]/REPOSITORY[:TAG][@sha256:DIGEST].
    #[arg(value_name = "REFERENCE")]
    reference: String,
    /// Also copy the artifact (and its signature) into this directory.
    #[arg(short, long, value_name = "DIR")]
    output: Option<PathBuf>,
    #[command(flatten)]
    load: LoadArgs,
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
    /// JSON, Winlogbeat, HELK/NXLog, Sentinel exports), also inside .gz and .zip; a
    /// directory: the log files under it, by name. `-` or none: stdin.
    #[arg(value_name = "INPUT")]
    inputs: Vec<PathBuf>,
    /// Rules: a component (`.wasm`), a Sigma rule (`.yml`, `.yaml`), a directory (its
    /// `*.wasm`, and its Sigma files searched recursively: they make one pack), or
    /// oci://HOST/REPO:TAG; repeatable. Default: the bundled Soft Cell rule.
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
    #[command(flatten)]
    window_bounds: WindowBoundArgs,
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
    /// Threads that read and parse inputs, evaluate batches and summarize the windows that
    /// close together [default: the number of cores]; the output is the same, in the same
    /// order, whatever the number.
    #[arg(short = 'j', long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=256))]
    jobs: Option<u32>,
    /// Parse every JSON line and render every EVTX record in full. By default an evtx_dump
    /// line, or a binary EVTX record, whose EventID and Channel show it to be of a skipped
    /// kind (not Sysmon 1 or Security 4688) is counted as skipped without a parse, so its
    /// JSON syntax (or the rest of its binary XML) is not checked.
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
    /// rejection reason, every rule's failures, every Sigma rule left out (stderr shows the
    /// largest kinds and the first rules only).
    #[arg(long, value_name = "FILE")]
    summary_json: Option<PathBuf>,
    /// Write the output to FILE (created, or emptied) instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    #[command(flatten)]
    load: LoadArgs,
}

/// What open windows hold at most (see README, "Outputs"), for `eval` and `run`.
#[derive(Debug, Args)]
struct WindowBoundArgs {
    /// A device's matches of one rule that one window holds at most: reaching it, they are
    /// summarized at once, as a part of the window (its alert says `WindowPart`), and the
    /// device's later matches in the window make the next part.
    #[arg(long, default_value_t = eval::DEFAULT_MAX_WINDOW_MATCHES as u32, value_parser = clap::value_parser!(u32).range(1..), value_name = "N")]
    max_window_matches: u32,
    /// Memory the matches held in open windows may take together, in MiB: past it, the
    /// windows that hold the most are summarized at once, each device's matches a part of its
    /// window (`WindowPart`), until they hold three quarters of it.
    #[arg(long, default_value_t = (eval::DEFAULT_MAX_WINDOW_BYTES >> 20) as u32, value_parser = clap::value_parser!(u32).range(1..=1_048_576), value_name = "MIB")]
    max_window_mib: u32,
}

impl WindowBoundArgs {
    /// A device's matches of one rule one window holds at most.
    fn max_window_matches(&self) -> usize {
        self.max_window_matches as usize
    }

    /// The bytes all open windows' matches hold at most.
    fn max_window_bytes(&self) -> usize {
        (self.max_window_mib as usize) << 20
    }
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
    /// The largest rule artifact loaded, in MiB [default: 64].
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
    #[command(flatten)]
    registry: RegistryArgs,
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
    /// Keep the cache directory within MIB: writing an entry removes the entries used
    /// longest ago [default: 1024].
    #[arg(long, value_name = "MIB", help_heading = "Cache")]
    cache_max_mib: Option<u64>,
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

/// mimalloc's `mi_option_purge_delay` (its place in `mi_option_t`, which the `-sys` crate does
/// not name); its default is 1,000 ms in the mimalloc the crate builds (v3). A test checks
/// that this is the option with that default.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// The short purge delay (mimalloc 2's default): `run`'s, and `eval`'s while it compiles its
/// rules (see [`set_purge_delay`] and [`compiling_rules`]).
const PURGE_DELAY_MS: std::ffi::c_long = 10;

/// mimalloc's own variable for the purge delay: where the operator sets it, it wins.
const PURGE_DELAY_VARIABLE: &str = "MIMALLOC_PURGE_DELAY";

/// Whether `value`, that of [`PURGE_DELAY_VARIABLE`], sets the purge delay. An empty variable
/// counts as unset (mimalloc alone would read it as 1 ms).
fn operator_sets_purge_delay(value: Option<&std::ffi::OsStr>) -> bool {
    value.is_some_and(|value| !value.is_empty())
}

/// The purge delay, in milliseconds.
fn purge_delay() -> std::ffi::c_long {
    // SAFETY: a plain getter of a global option.
    #[allow(unsafe_code)]
    unsafe {
        libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY)
    }
}

/// Sets the purge delay to `ms`.
fn put_purge_delay(ms: std::ffi::c_long) {
    // SAFETY: a plain setter of a global option. `main` sets it before any other thread
    // exists; `compiling_rules` while other threads (the deadline's ticker, the compiler's
    // idle workers) may read it: mimalloc reads its options unsynchronized by design (it sets
    // each from the environment on its first read, from whichever thread), and either value
    // is a delay.
    #[allow(unsafe_code)]
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, ms)
    };
}

/// The purge delay the binary sets for a command: 10 ms for one that runs until it is
/// stopped (`run`), none (mimalloc's second) for the others, and none where the operator set
/// one in the environment.
fn purge_delay_to_set(command: &Command, operator: Option<&std::ffi::OsStr>) -> Option<std::ffi::c_long> {
    let runs_until_stopped = matches!(command, Command::Run(_));
    (runs_until_stopped && !operator_sets_purge_delay(operator)).then_some(PURGE_DELAY_MS)
}

/// When freed memory is given back to the system. Events are allocated by the threads that
/// read them and freed by the ones that evaluate them, and pages freed are kept for reuse
/// until the delay passes: a page given back and touched again costs a fault, a zeroing and,
/// with several threads, a TLB shootdown on every core.
/// - `run` gives memory back after 10 ms (mimalloc 2's default): it runs until stopped, and
///   what a burst of events took should not stay taken while it idles.
/// - The other commands keep mimalloc 3's second. Over `make bench`'s real records (2 jobs,
///   four alternated runs each), 1,000 ms against 10 ms: the Sigma catalog over 5,000 EVTX
///   files 1.13-1.17 s against 1.20-1.24 s (peak 225 MiB against 209), over the
///   `#attributes` JSON lines 1.42-1.48 s against 1.54-1.59 s (190 against 172 MiB); Soft
///   Cell 0.53-0.54 s against 0.54-0.92 s (171 against 169 MiB) and 0.96-1.04 s against
///   1.01-1.17 s (136 against 133 MiB). (At an earlier stop the catalog's peak was 327-330
///   MiB at 1,000 ms, over issue 17's 300 MB, while its windows were summarized from copies.)
fn set_purge_delay(command: &Command) {
    let operator = std::env::var_os(PURGE_DELAY_VARIABLE);
    if let Some(delay) = purge_delay_to_set(command, operator.as_deref()) {
        put_purge_delay(delay);
    }
}

/// Runs `compile` (loading rules: Sigma files built into a pack, packs compiled by Cranelift
/// on its threads) with freed memory given back after 10 ms, then puts the purge delay back
/// as it was. The stages allocate and free much, some of it on the compiler's threads, and
/// with the delay of a second each thread's freed pages were kept while the next stage took
/// new ones: `eval --rules` over the Sigma catalog with an empty cache peaked at 257-302 MiB
/// (issue 17 allows 300 MB, 286 MiB), at 183-196 MiB with 10 ms. Where the operator set the
/// delay, it is left alone.
pub(crate) fn compiling_rules<T>(compile: impl FnOnce() -> T) -> T {
    if operator_sets_purge_delay(std::env::var_os(PURGE_DELAY_VARIABLE).as_deref()) {
        return compile();
    }
    let before = purge_delay();
    put_purge_delay(PURGE_DELAY_MS);
    let result = compile();
    put_purge_delay(before);
    result
}

fn main() -> ExitCode {
    // Transparent huge pages off: the allocator asks for them, and the kernel then zeroes
    // 2 MiB at a time of which a run touches little. With them, the catalog over 100,000
    // events peaked at 296-328 MB instead of 275-280, and zeroing pages was a seventh of
    // reading a folder of EVTX files. (Not fatal where the kernel refuses it.)
    #[cfg(target_os = "linux")]
    let _ = rustix::thread::disable_transparent_huge_pages(true);
    let cli = Cli::parse();
    set_purge_delay(&cli.command);
    // Before any other thread starts, so that they all inherit it.
    if cli::scheduling::runs_as_batch(&cli.command)
        && let Err(e) = cli::scheduling::run_as_batch()
    {
        tracing::debug!("not run as batch work: {e}");
    }
    let config = cli.config.as_deref();
    let result = match cli.command {
        Command::Eval(args) => cli::eval::run_eval(args, config),
        Command::Inspect(args) => cli::inspect::run_inspect(args, config),
        Command::Config(ConfigCommand::Show(args)) => cli::config::run_config_show(args, config),
        Command::New(args) => cli::authoring::run_new(args),
        Command::Run(args) => cli::live::run_live(args, config),
        Command::Test(args) => cli::authoring::run_test(args, config),
        Command::Completions(args) => {
            clap_complete::generate(args.shell, &mut Cli::command(), "rulehost", &mut io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Man => clap_mangen::Man::new(Cli::command())
            .render(&mut io::stdout())
            .map(|()| ExitCode::SUCCESS)
            .map_err(Into::into),
        Command::Sigma(SigmaCommand::Compile(args)) => cli::sigma::run_sigma_compile(args, config),
        Command::Sigma(SigmaCommand::Check(args)) => cli::sigma::run_sigma_check(args),
        Command::Key(KeyCommand::Generate(args)) => cli::keys::run_key_generate(args),
        Command::Key(KeyCommand::Export(args)) => cli::keys::run_key_export(args),
        Command::Sign(args) => cli::keys::run_sign(args),
        Command::Verify(args) => cli::inspect::run_verify(args, config),
        Command::Push(args) => cli::registry::run_push(args, config),
        Command::Pull(args) => cli::registry::run_pull(args, config),
    };
    match result {
        Ok(code) => code,
        Err(error) if is_broken_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => {
            // The error may name an input or quote a record: see `rulehost::text`.
            eprintln!("rulehost: error: {}", rulehost::text::printable(&describe(&error), &['\n']));
            ExitCode::from(2)
        }
    }
}

/// The error and its causes, each once: an error that names its file also shows its cause
/// in its own message, and `{:#}` would repeat it.
fn describe(error: &anyhow::Error) -> String {
    let mut text = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        if !text.ends_with(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

/// A closed stdout (`rulehost eval ... | head`) is the reader's choice, not a failure.
fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause.downcast_ref::<io::Error>().is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
            || matches!(cause.downcast_ref::<EvalError>(), Some(EvalError::Output(e)) if e.kind() == io::ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tests that read or set the purge delay, one at a time.
    static PURGE_DELAY: std::sync::Mutex<()> = std::sync::Mutex::new(());

    #[test]
    fn the_purge_delay_option_is_the_one_with_its_default() {
        let _alone = PURGE_DELAY.lock().unwrap_or_else(|e| e.into_inner());
        // Read before anything sets it (or after it was put back): 1,000 (ms) is the purge
        // delay's default, and the options around it have others, so a wrong place fails.
        #[allow(unsafe_code)]
        let (delay, before, after) = unsafe {
            (
                libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY),
                libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY - 1),
                libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY + 1),
            )
        };
        assert_eq!(delay, 1000, "the option at {MI_OPTION_PURGE_DELAY} is not the purge delay");
        assert_ne!(before, 1000);
        assert_ne!(after, 1000);
    }

    #[test]
    fn rules_are_compiled_with_freed_memory_given_back_soon_then_the_delay_is_put_back() {
        let _alone = PURGE_DELAY.lock().unwrap_or_else(|e| e.into_inner());
        let before = purge_delay();
        let during = compiling_rules(purge_delay);
        if operator_sets_purge_delay(std::env::var_os(PURGE_DELAY_VARIABLE).as_deref()) {
            assert_eq!(during, before, "the operator's delay is left alone");
        } else {
            assert_eq!(during, PURGE_DELAY_MS);
        }
        assert_eq!(purge_delay(), before, "put back after compiling");
    }

    #[test]
    fn only_run_gives_memory_back_soon_unless_the_operator_says_otherwise() {
        let command = |args: &[&str]| Cli::try_parse_from(args).expect("the arguments parse").command;
        let run = command(&["rulehost", "run", "--rules", "rules/"]);
        assert_eq!(purge_delay_to_set(&run, Some("250".as_ref())), None);
        assert_eq!(purge_delay_to_set(&run, None), Some(PURGE_DELAY_MS));
        assert_eq!(purge_delay_to_set(&run, Some("".as_ref())), Some(PURGE_DELAY_MS));
        // The bounded commands keep mimalloc's own delay.
        for args in
            [&["rulehost", "eval", "x.jsonl"][..], &["rulehost", "sigma", "compile", "r/", "-o", "p.wasm"]]
        {
            assert_eq!(purge_delay_to_set(&command(args), None), None, "{args:?}");
        }
    }
}
