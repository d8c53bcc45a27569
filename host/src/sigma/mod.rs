//! Sigma rules: read from YAML, checked, and compiled into the data of a rule pack
//! ([`rulehost_sigma::Pack`]). What this compiler cannot express exactly it refuses, naming the
//! construct and the reason: nothing is approximated.
//!
//! The semantics are the specification's and pySigma's (its reference implementation); see
//! [`value`] for values and modifiers and [`condition`] for the condition grammar.

mod attributes;
pub mod cache;
mod condition;
pub mod pack;
mod pyyaml;
pub mod snapshot;
mod value;
pub mod yaml;

use std::path::{Path, PathBuf};

use rulehost_sigma::ir::{self, Check, Expr, Level, Target, Test, View};
use yaml_rust2::Yaml;

use condition::Condition;
use value::{Compiled, Modifier, Value};

/// A Sigma file larger than this is refused before it is parsed: the largest rule of the
/// catalog is ~20 KiB.
pub const MAX_RULE_BYTES: u64 = 1 << 20;

/// A construct the compiler refuses, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported {
    /// The construct: a modifier (`|cidr`), `condition`, `field`, `logsource`, ...
    pub construct: String,
    /// Why it is refused.
    pub reason: String,
}

impl Unsupported {
    fn new(construct: &str, reason: &str) -> Self {
        Unsupported { construct: construct.into(), reason: reason.into() }
    }
}

impl std::fmt::Display for Unsupported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.construct, self.reason)
    }
}

/// `text` with its control characters escaped: a rule's file name, id and title are its
/// author's, and printed as they are, an escape sequence in a title drove the terminal of
/// whoever ran `sigma check`.
fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    crate::text::printable(text, &[])
}

/// A Sigma rule that could not be read or compiled.
#[derive(Debug, thiserror::Error)]
pub enum SigmaError {
    /// The file could not be read.
    #[error("{}: {source}", printable(&file.display().to_string()))]
    Io {
        /// The file.
        file: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_RULE_BYTES`].
    #[error("{}: {size} bytes, more than the {MAX_RULE_BYTES} bytes a Sigma rule may have", printable(&file.display().to_string()))]
    TooLarge {
        /// The file.
        file: PathBuf,
        /// Its size.
        size: u64,
    },
    /// Not YAML, or not a Sigma rule.
    #[error("{}: not a Sigma rule: {}", printable(&file.display().to_string()), printable(reason))]
    Malformed {
        /// The file.
        file: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A construct the compiler refuses.
    #[error(
        "{}: rule {} ({}): {}",
        printable(&file.display().to_string()),
        printable(id),
        printable(title),
        printable(&unsupported.to_string())
    )]
    Unsupported {
        /// The file.
        file: PathBuf,
        /// The rule's id.
        id: String,
        /// The rule's title.
        title: String,
        /// What and why.
        unsupported: Unsupported,
    },
}

impl SigmaError {
    /// The file the error is about.
    pub fn file(&self) -> &Path {
        match self {
            SigmaError::Io { file, .. }
            | SigmaError::TooLarge { file, .. }
            | SigmaError::Malformed { file, .. }
            | SigmaError::Unsupported { file, .. } => file,
        }
    }

    /// The construct refused, or what kind of error this is, for counting.
    pub fn construct(&self) -> String {
        match self {
            SigmaError::Io { .. } => "unreadable".into(),
            SigmaError::TooLarge { .. } => "too large".into(),
            SigmaError::Malformed { .. } => "malformed".into(),
            SigmaError::Unsupported { unsupported, .. } => unsupported.construct.clone(),
        }
    }

    /// Whether the rule is out of the compiler's scope rather than of a construct it cannot
    /// take: of another log source than Windows process creation (`logsource`), or
    /// deprecated or unsupported by its authors (`status`).
    pub fn is_out_of_scope(&self) -> bool {
        matches!(self, SigmaError::Unsupported { unsupported, .. }
            if unsupported.construct == LOGSOURCE || unsupported.construct == STATUS)
    }
}

/// The construct of a rule refused for its log source.
pub const LOGSOURCE: &str = "logsource";

/// The construct of a rule left out for its status.
pub const STATUS: &str = "status";

/// Whether `path` names a Sigma file by its extension.
pub fn is_sigma_file(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "yml" || e == "yaml")
}

/// The Sigma files under `dir`, recursively, in path order (the catalog keeps its rules in
/// nested folders). Symbolic links are followed, to files and to folders (a folder reached
/// twice is searched once); a Sigma name that is not a regular file (a broken link, a pipe)
/// is listed all the same, so that compiling it says what it is rather than it being
/// skipped unseen.
pub fn files_under(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    use std::os::unix::fs::MetadataExt;
    let mut files = Vec::new();
    let mut searched = std::collections::HashSet::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let metadata = std::fs::metadata(&dir)?;
        if !searched.insert((metadata.dev(), metadata.ino())) {
            continue;
        }
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let path = entry.path();
            let kind = entry.file_type()?;
            let is_dir = match kind.is_symlink() {
                true => std::fs::metadata(&path).is_ok_and(|target| target.is_dir()),
                false => kind.is_dir(),
            };
            if is_dir {
                pending.push(path);
            } else if is_sigma_file(&path) {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Reads and compiles the Sigma rule in `file`.
pub fn compile_file(file: &Path) -> Result<ir::Rule, SigmaError> {
    let io = |source| SigmaError::Io { file: file.to_path_buf(), source };
    let bytes = crate::files::read_bounded(file, MAX_RULE_BYTES).map_err(io)?;
    if bytes.len() as u64 > MAX_RULE_BYTES {
        let size = std::fs::metadata(file).map_or(bytes.len() as u64, |m| m.len());
        return Err(SigmaError::TooLarge { file: file.to_path_buf(), size });
    }
    // As `read_to_string` says it.
    let invalid =
        || std::io::Error::new(std::io::ErrorKind::InvalidData, "stream did not contain valid UTF-8");
    let text = String::from_utf8(bytes).map_err(|_| io(invalid()))?;
    compile_text(file, &text)
}

/// Compiles the Sigma rule `text`, named `file` in errors.
pub fn compile_text(file: &Path, text: &str) -> Result<ir::Rule, SigmaError> {
    let malformed = |reason: String| SigmaError::Malformed { file: file.to_path_buf(), reason };
    let (mut documents, written) = yaml::load(text).map_err(malformed)?;
    if documents.len() != 1 {
        return Err(malformed(format!(
            "{} YAML documents; a rule file holds one rule (multi-document collections are not supported)",
            documents.len()
        )));
    }
    let document = documents.pop().expect("one");
    let Yaml::Hash(_) = document else { return Err(malformed("the document is not a mapping".into())) };
    let Some(written) = written else {
        return Err(malformed("the document could not be read as written".into()));
    };
    let attributes = attributes::check(&written);
    // The rule as pySigma reads it, if PyYAML reads it (else as the loader does, to tell its
    // log source, and refused below).
    let (document, typed) = match pyyaml::document(&written) {
        Ok(typed) => {
            drop(document);
            (typed, Ok(()))
        }
        Err(error) => (document, Err(error)),
    };
    // The rule as its errors name it: with the attributes pySigma reads, or as it can be.
    let string = |key: &str| match &document[key] {
        Yaml::String(s) => Some(s.clone()),
        _ => None,
    };
    let (id, title) = match &attributes {
        Ok(read) => (read.id.unwrap_or_default().to_owned(), read.title.to_owned()),
        Err(_) => (string("id").unwrap_or_default(), string("title").unwrap_or_default()),
    };
    let unsupported = |unsupported: Unsupported| SigmaError::Unsupported {
        file: file.to_path_buf(),
        id: id.clone(),
        title: title.clone(),
        unsupported,
    };
    if !document["correlation"].is_badvalue() {
        return Err(unsupported(Unsupported::new("correlation", "correlation rules are not supported")));
    }
    check_logsource(&document["logsource"]).map_err(unsupported)?;
    // A rule of another log source is left out whatever its attributes; one of process
    // creation must have those that pySigma takes.
    let attributes = attributes.map_err(malformed)?;
    typed.map_err(malformed)?;
    if id.is_empty() {
        return Err(malformed(format!("rule {title:?} has no `id`")));
    }
    match status(&document["status"]) {
        Ok(None) => {}
        Ok(Some(left_out)) => return Err(unsupported(left_out)),
        Err(reason) => return Err(malformed(reason)),
    }
    let level = attributes.level.unwrap_or(Level::Medium);
    let condition = detection(&document["detection"]).map_err(unsupported)?;
    let (tactics, techniques) = attack_tags(&document["tags"]);
    let version = attributes.modified.or(attributes.date).unwrap_or("0").replace('/', "-");
    let description = attributes.description.unwrap_or_default().to_owned();
    // What the pack will say of the rule: within the contract's bounds, or the pack that
    // held it would be refused whole when loaded.
    crate::contract::validate_naming(&crate::contract::Naming {
        id: &id,
        version: &version,
        title: &title,
        description: &description,
        tactics: &tactics,
        techniques: &techniques,
    })
    .map_err(|problem| unsupported(Unsupported::new("metadata", &problem.0)))?;
    Ok(ir::Rule { id, version, title, description, level, tactics, techniques, condition })
}

/// The pack evaluates process creations on Windows, and only those.
fn check_logsource(logsource: &Yaml) -> Result<(), Unsupported> {
    let category = logsource["category"].as_str();
    let product = logsource["product"].as_str();
    if category == Some("process_creation")
        && product == Some("windows")
        && logsource["service"].is_badvalue()
    {
        return Ok(());
    }
    Err(Unsupported {
        construct: LOGSOURCE.into(),
        reason: format!(
            "logsource category {:?}, product {:?}: only Windows process_creation rules are compiled",
            category.unwrap_or("-"),
            product.unwrap_or("-")
        ),
    })
}

/// A rule's `status`, read as pySigma reads it (any case; anything but a string, or a name
/// that is not one of Sigma's five, is an error): `Some` for the statuses whose rules are left
/// out. SigmaHQ marks a rule `deprecated` when another replaces it or covers what it
/// detects, and `unsupported` when it cannot be used as it stands; Hayabusa leaves both out
/// by default too. `experimental`, `test` and `stable` rules are compiled.
fn status(status: &Yaml) -> Result<Option<Unsupported>, String> {
    let name = match status {
        Yaml::BadValue | Yaml::Null => return Ok(None),
        Yaml::String(name) => name,
        _ => return Err("`status` is not a string (Sigma's statuses: stable, test, experimental, deprecated, unsupported)".into()),
    };
    // Python's `upper`, as pySigma's `SigmaStatus[status.upper()]`.
    let reason = match name.to_uppercase().as_str() {
        "STABLE" | "TEST" | "EXPERIMENTAL" => return Ok(None),
        "DEPRECATED" => "status deprecated: its authors replaced it, or another rule covers what it detects",
        "UNSUPPORTED" => "status unsupported: its authors say it cannot be used as it stands",
        _ => return Err(format!("'{name}' is not a valid Sigma rule status")),
    };
    Ok(Some(Unsupported::new(STATUS, reason)))
}

/// ATT&CK tactics and techniques from `attack.*` tags.
fn attack_tags(tags: &Yaml) -> (Vec<String>, Vec<String>) {
    const TACTICS: &[(&str, &str)] = &[
        ("reconnaissance", "Reconnaissance"),
        ("resource-development", "Resource Development"),
        ("initial-access", "Initial Access"),
        ("execution", "Execution"),
        ("persistence", "Persistence"),
        ("privilege-escalation", "Privilege Escalation"),
        ("defense-evasion", "Defense Evasion"),
        ("credential-access", "Credential Access"),
        ("discovery", "Discovery"),
        ("lateral-movement", "Lateral Movement"),
        ("collection", "Collection"),
        ("command-and-control", "Command and Control"),
        ("exfiltration", "Exfiltration"),
        ("impact", "Impact"),
    ];
    let (mut tactics, mut techniques) = (Vec::new(), Vec::new());
    for tag in tags.as_vec().map(Vec::as_slice).unwrap_or_default() {
        let Some(name) = tag.as_str().and_then(|t| t.strip_prefix("attack.")) else { continue };
        if let Some((_, tactic)) = TACTICS.iter().find(|(key, _)| *key == name) {
            tactics.push((*tactic).to_owned());
        } else if name.len() > 1
            && name.starts_with('t')
            && name[1..].chars().all(|c| c.is_ascii_digit() || c == '.')
        {
            techniques.push(name.to_ascii_uppercase());
        }
    }
    (tactics, techniques)
}

/// The detection section: its condition with every identifier put in place.
fn detection(detection: &Yaml) -> Result<Expr, Unsupported> {
    let Yaml::Hash(map) = detection else {
        return Err(Unsupported::new("detection", "no `detection` mapping"));
    };
    let mut definitions: Vec<(String, Expr)> = Vec::new();
    let mut conditions = Vec::new();
    for (key, value) in map {
        let Some(name) = key.as_str() else {
            return Err(Unsupported::new("detection", "a detection identifier is not a string"));
        };
        if name == "condition" {
            match value {
                Yaml::String(text) => conditions.push(text.clone()),
                Yaml::Array(list) => {
                    for item in list {
                        let text =
                            item.as_str().ok_or_else(|| Unsupported::new("condition", "not a string"))?;
                        conditions.push(text.to_owned());
                    }
                }
                _ => return Err(Unsupported::new("condition", "not a string")),
            }
        } else if name == "timeframe" {
            return Err(Unsupported::new("timeframe", "timeframes (aggregations) are not supported"));
        } else {
            definitions.push((name.to_owned(), definition(value)?));
        }
    }
    if conditions.is_empty() {
        return Err(Unsupported::new("condition", "the detection has no condition"));
    }
    let mut exprs = Vec::with_capacity(conditions.len());
    for text in &conditions {
        exprs.push(resolve(&condition::parse(text)?, &definitions)?);
    }
    // Several conditions are alternatives (Sigma: a list of conditions is OR).
    Ok(if exprs.len() == 1 { exprs.pop().expect("one") } else { Expr::Or(exprs) })
}

/// Puts the definitions in place of the identifiers of `condition`.
fn resolve(condition: &Condition, definitions: &[(String, Expr)]) -> Result<Expr, Unsupported> {
    Ok(match condition {
        Condition::And(c) => Expr::And(c.iter().map(|c| resolve(c, definitions)).collect::<Result<_, _>>()?),
        Condition::Or(c) => Expr::Or(c.iter().map(|c| resolve(c, definitions)).collect::<Result<_, _>>()?),
        Condition::Not(c) => Expr::Not(Box::new(resolve(c, definitions)?)),
        Condition::Identifier(name) => {
            definitions.iter().find(|(n, _)| n == name).map(|(_, e)| e.clone()).ok_or_else(|| {
                Unsupported { construct: "condition".into(), reason: format!("no detection named {name:?}") }
            })?
        }
        Condition::Of { all, pattern } => {
            let matched: Vec<Expr> = definitions
                .iter()
                .filter(|(name, _)| condition::name_matches(pattern, name))
                .map(|(_, e)| e.clone())
                .collect();
            if matched.is_empty() {
                return Err(Unsupported {
                    construct: "condition".into(),
                    reason: format!("`{pattern}` names no detection"),
                });
            }
            if *all { Expr::And(matched) } else { Expr::Or(matched) }
        }
    })
}

/// One detection definition: a map (AND of its fields), a list of maps (OR), or a list of
/// plain values (keywords, OR).
fn definition(value: &Yaml) -> Result<Expr, Unsupported> {
    match value {
        Yaml::Hash(map) => {
            let mut tests = Vec::with_capacity(map.len());
            for (key, values) in map {
                let key = match key {
                    Yaml::String(k) => k.as_str(),
                    _ => return Err(Unsupported::new("field", "a field name is not a string")),
                };
                tests.push(field(key, values)?);
            }
            Ok(Expr::And(tests))
        }
        Yaml::Array(items) => {
            if items.iter().all(|i| matches!(i, Yaml::Hash(_))) {
                Ok(Expr::Or(items.iter().map(definition).collect::<Result<_, _>>()?))
            } else if items.iter().all(|i| !matches!(i, Yaml::Hash(_) | Yaml::Array(_))) {
                keywords(items)
            } else {
                Err(Unsupported::new("detection", "a list that mixes maps and plain values"))
            }
        }
        Yaml::String(_) | Yaml::Integer(_) | Yaml::Real(_) | Yaml::Boolean(_) | Yaml::Null => {
            keywords(std::slice::from_ref(value))
        }
        _ => Err(Unsupported::new("detection", "a detection is a map, a list of maps or a list of keywords")),
    }
}

/// Plain values: each is searched in the event's text ([`ir::KEYWORD_VIEWS`]), anywhere in a
/// value (full-text search), with Sigma's wildcards and escapes.
fn keywords(items: &[Yaml]) -> Result<Expr, Unsupported> {
    let values = items
        .iter()
        .map(|item| match scalar(item)? {
            // A number is searched as Python prints it; pySigma refuses a boolean keyword.
            Value::Number(text) => Ok(Value::String(text)),
            Value::Bool(_) => Err(Unsupported::new(
                "keyword",
                "Boolean values can't appear as standalone value without a field name.",
            )),
            value => Ok(value),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let Compiled::Checks { values, .. } = value::compile(&[Modifier::Contains], &values)? else {
        unreachable!("contains makes checks")
    };
    Ok(Expr::Or(
        values
            .into_iter()
            .flatten()
            .map(|check| match check {
                Check::Empty => Err(Unsupported::new("keyword", "a null keyword")),
                check => Ok(Expr::Test(Test { target: Target::Keyword, check })),
            })
            .collect::<Result<_, _>>()?,
    ))
}

fn scalar(value: &Yaml) -> Result<Value, Unsupported> {
    Ok(match value {
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Integer(_) | Yaml::Real(_) => Value::Number(
            pyyaml::sigma_number(value).ok_or_else(|| Unsupported::new("value", "a number past 128 bits"))?,
        ),
        Yaml::Boolean(b) => Value::Bool(*b),
        Yaml::Null => Value::Null,
        _ => return Err(Unsupported::new("value", "a value is a string, a number, a boolean or null")),
    })
}

/// `Field|modifier|...: value or list`.
fn field(key: &str, values: &Yaml) -> Result<Expr, Unsupported> {
    let mut parts = key.split('|');
    let name = parts.next().unwrap_or_default();
    let modifiers = parts.map(Modifier::parse).collect::<Result<Vec<_>, _>>()?;
    let view = view(name)?;
    let values = match values {
        Yaml::Array(items) => items.iter().map(scalar).collect::<Result<Vec<_>, _>>()?,
        single => vec![scalar(single)?],
    };
    if values.is_empty() {
        return Err(Unsupported::new("value", &format!("{name} has an empty list of values")));
    }
    let exists = modifiers.contains(&Modifier::Exists);
    // `neq` negates the whole item, wherever it is written (pySigma's `SigmaNegateModifier`).
    let negated = modifiers.contains(&Modifier::Neq);
    let test = |check: Check| Expr::Test(Test { target: Target::View(view), check });
    let item = match value::compile(&modifiers, &values)? {
        Compiled::FieldRefs { all, fields } => {
            let tests = fields
                .iter()
                .map(|f| Ok(test(Check::EqualsView(self::view(f)?))))
                .collect::<Result<Vec<_>, Unsupported>>()?;
            if all { Expr::And(tests) } else { Expr::Or(tests) }
        }
        Compiled::Checks { all, values: checks } => {
            let per_value: Vec<Expr> = checks
                .into_iter()
                .zip(&values)
                .map(|(alternatives, value)| {
                    let expr = Expr::Or(alternatives.into_iter().map(test).collect());
                    match value {
                        // `exists: true`: not empty.
                        Value::Bool(true) if exists => Expr::Not(Box::new(expr)),
                        _ => expr,
                    }
                })
                .collect();
            if all { Expr::And(per_value) } else { Expr::Or(per_value) }
        }
    };
    Ok(if negated { Expr::Not(Box::new(item)) } else { item })
}

fn view(name: &str) -> Result<View, Unsupported> {
    ir::view_of(name).ok_or_else(|| Unsupported {
        construct: "field".into(),
        reason: format!("field {name:?} is not in the process event (known: {})", known_fields()),
    })
}

fn known_fields() -> String {
    ir::SIGMA_FIELDS.iter().map(|(name, _)| *name).collect::<Vec<_>>().join(", ")
}

/// The outcome of compiling a set of files: the rules compiled, and every one refused.
#[derive(Debug, Default)]
pub struct Compilation {
    /// Compiled rules with their files, in file order.
    pub rules: Vec<(PathBuf, ir::Rule)>,
    /// Files refused, with the reason.
    pub refused: Vec<SigmaError>,
}

/// Compiles every Sigma file among `paths` (files, and directories searched recursively).
/// Two rules with one id are an error of the second.
pub fn compile_paths(paths: &[PathBuf]) -> Result<Compilation, SigmaError> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            files.extend(files_under(path).map_err(|source| SigmaError::Io { file: path.clone(), source })?);
        } else {
            files.push(path.clone());
        }
    }
    let mut compilation = Compilation::default();
    for file in files {
        match compile_file(&file) {
            Ok(rule) => {
                if let Some((first, _)) = compilation.rules.iter().find(|(_, r)| r.id == rule.id) {
                    compilation.refused.push(SigmaError::Unsupported {
                        file: file.clone(),
                        id: rule.id.clone(),
                        title: rule.title.clone(),
                        unsupported: Unsupported {
                            construct: "id".into(),
                            reason: format!("the id is also the id of {}", first.display()),
                        },
                    });
                } else {
                    compilation.rules.push((file, rule));
                }
            }
            Err(e) => compilation.refused.push(e),
        }
    }
    Ok(compilation)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile(text: &str) -> Result<ir::Rule, SigmaError> {
        compile_text(Path::new("test.yml"), text)
    }

    const HEADER: &str = "title: t\nid: 0f7a7c9e-0000-4000-8000-000000000001\nlogsource:\n  category: process_creation\n  product: windows\nlevel: critical\ntags:\n  - attack.execution\n  - attack.t1059.001\n  - attack.g0049\n";

    #[test]
    fn a_rule_compiles_with_its_metadata() {
        let rule = compile(&format!(
            "{HEADER}detection:\n  selection:\n    Image|endswith: '\\cmd.exe'\n    CommandLine|contains|all: ['a', 'b']\n  filter:\n    User: null\n  condition: selection and not filter\n"
        ))
        .unwrap();
        assert_eq!(rule.level, Level::Critical);
        assert_eq!(rule.tactics, vec!["Execution"]);
        assert_eq!(rule.techniques, vec!["T1059.001"]);
        let Expr::And(parts) = &rule.condition else { panic!("{:?}", rule.condition) };
        assert_eq!(parts.len(), 2);
    }

    #[test]
    fn deprecated_and_unsupported_rules_are_left_out_and_a_status_pysigma_refuses_is_refused() {
        let rule = |status: &str| {
            compile(&format!(
                "{HEADER}{status}detection:\n  selection:\n    Image|endswith: '\\cmd.exe'\n  condition: selection\n"
            ))
        };
        for compiled in ["", "status:\n", "status: stable\n", "status: Test\n", "status: EXPERIMENTAL\n"] {
            assert!(rule(compiled).is_ok(), "{compiled:?}: {:?}", rule(compiled));
        }
        // Python's `upper` maps the long s to S, as Rust's does.
        assert!(rule("status: \u{17f}table\n").is_ok());
        for (status, words) in [("deprecated", "status deprecated"), ("Unsupported", "status unsupported")] {
            let error = rule(&format!("status: {status}\n")).unwrap_err();
            assert!(error.is_out_of_scope(), "{error}");
            assert_eq!(error.construct(), STATUS);
            assert!(error.to_string().contains(words), "{error}");
        }
        for (status, words) in [
            ("retired", "'retired' is not a valid Sigma rule status"),
            ("[test]", "`status` is not a string"),
            ("1", "`status` is not a string"),
        ] {
            let error = rule(&format!("status: {status}\n")).unwrap_err();
            assert!(matches!(error, SigmaError::Malformed { .. }), "{error}");
            assert!(error.to_string().contains(words), "{error}");
        }
        // A rule of another log source is told by its log source first.
        let other = compile(&format!(
            "{}status: deprecated\ndetection:\n  selection:\n    Image: x\n  condition: selection\n",
            HEADER.replace("process_creation", "network_connection")
        ))
        .unwrap_err();
        assert_eq!(other.construct(), LOGSOURCE);
    }

    /// pySigma's answers to these (its SQLite backend's queries, or its errors) were read off
    /// pySigma 2.0.1; the differential test compares the matching ones on events.
    #[test]
    fn values_that_yaml_1_1_makes_numbers_booleans_or_null_take_no_string_modifier() {
        let rule = |selection: &str| {
            compile(&format!("{HEADER}detection:\n  selection:\n    {selection}\n  condition: selection\n"))
        };
        for (selection, construct, kind) in [
            ("CommandLine|contains: 010", "|contains", "the number 8"),
            ("CommandLine|startswith: 1_000", "|startswith", "the number 1000"),
            ("CommandLine|windash: 1.0e+3", "|windash", "the number 1000"),
            ("CommandLine|cased: yes", "|cased", "the boolean true"),
            ("CommandLine|contains|all: [a, 'on', off]", "|contains", "the boolean false"),
            ("CommandLine|endswith: ~", "|endswith", "null"),
        ] {
            let error = rule(selection).unwrap_err();
            assert_eq!(error.construct(), construct, "{selection}: {error}");
            assert!(error.to_string().contains(kind), "{selection}: {error}");
        }
        // Quoted, they are strings; `all` and `neq` take any value, `re` what Python's `str`
        // makes of it.
        for selection in [
            "CommandLine|contains: '010'",
            "CommandLine|all: [010, yes, ~]",
            "CommandLine|neq: 010",
            "CommandLine|exists: yes",
        ] {
            assert!(rule(selection).is_ok(), "{selection}: {:?}", rule(selection));
        }
        let patterns = |selection: &str| {
            let rule = rule(selection).unwrap();
            format!("{:?}", rule.condition)
        };
        assert!(
            patterns("CommandLine|re: yes").contains("pattern: \"True\""),
            "{}",
            patterns("CommandLine|re: yes")
        );
        assert!(patterns("CommandLine|re: 010").contains("pattern: \"8\""));
        assert!(patterns("CommandLine|re: ~").contains("pattern: \"None\""));
        // A boolean keyword is an error to pySigma; a number is searched as it prints it.
        let keywords = |words: &str| {
            compile(&format!("{HEADER}detection:\n  keywords: {words}\n  condition: keywords\n"))
        };
        assert!(keywords("[yes]").unwrap_err().to_string().contains("Boolean values can't appear"));
        assert!(format!("{:?}", keywords("[010]").unwrap().condition).contains("\"8\""));
        // pySigma has no type for a date; quoted, it is a string.
        let date = rule("CommandLine: 2024-01-01").unwrap_err();
        assert!(matches!(date, SigmaError::Malformed { .. }), "{date}");
        assert!(rule("CommandLine: '2024-01-01'").is_ok());
    }

    #[test]
    fn linked_rules_are_found_and_what_is_not_a_rule_file_is_named() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let rule = format!(
            "{HEADER}detection:\n  selection:\n    Image|endswith: '\\cmd.exe'\n  condition: selection\n"
        );
        let elsewhere = dir.path().join("elsewhere");
        std::fs::create_dir_all(elsewhere.join("nested")).unwrap();
        std::fs::write(elsewhere.join("nested/rule.yml"), &rule).unwrap();
        let rules = dir.path().join("rules");
        std::fs::create_dir(&rules).unwrap();
        std::fs::write(rules.join("own.yml"), &rule).unwrap();
        symlink(elsewhere.join("nested/rule.yml"), rules.join("linked.yml")).unwrap();
        symlink(&elsewhere, rules.join("folder")).unwrap();
        // A loop back to the folder itself, a broken link and a device: none hangs the search.
        symlink(&rules, rules.join("loop")).unwrap();
        symlink(dir.path().join("missing.yml"), rules.join("broken.yml")).unwrap();
        symlink("/dev/zero", rules.join("zero.yml")).unwrap();
        let found = files_under(&rules).unwrap();
        let names: Vec<String> =
            found.iter().map(|f| f.strip_prefix(&rules).unwrap().display().to_string()).collect();
        assert_eq!(names, ["broken.yml", "folder/nested/rule.yml", "linked.yml", "own.yml", "zero.yml"]);
        for file in &found {
            let result = compile_file(file);
            match file.file_name().unwrap().to_str().unwrap() {
                "broken.yml" => assert!(matches!(result, Err(SigmaError::Io { .. })), "{result:?}"),
                "zero.yml" => {
                    let error = result.unwrap_err().to_string();
                    assert!(
                        error.ends_with("zero.yml: not a regular file (a device, a pipe or a socket)"),
                        "{error}"
                    );
                }
                _ => assert!(result.is_ok(), "{file:?}: {result:?}"),
            }
        }
    }

    #[test]
    fn values_shared_through_an_alias_compile_as_if_written_out() {
        let shared = compile(&format!(
            "{HEADER}detection:\n  selection:\n    CommandLine|contains: &tools [whoami, ipconfig]\n  parent:\n    ParentCommandLine|contains: *tools\n  condition: selection or parent\n"
        ))
        .unwrap();
        let written = compile(&format!(
            "{HEADER}detection:\n  selection:\n    CommandLine|contains: [whoami, ipconfig]\n  parent:\n    ParentCommandLine|contains: [whoami, ipconfig]\n  condition: selection or parent\n"
        ))
        .unwrap();
        assert_eq!(format!("{:?}", shared.condition), format!("{:?}", written.condition));
    }

    #[test]
    fn a_rule_whose_aliases_expand_without_bound_is_malformed() {
        let mut text = format!("{HEADER}detection:\n  a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for level in 1..9 {
            let aliases = vec![format!("*a{}", level - 1); 10].join(", ");
            text += &format!("  a{level}: &a{level} [{aliases}]\n");
        }
        text += "  selection:\n    CommandLine|contains: *a8\n  condition: selection\n";
        let Err(SigmaError::Malformed { reason, .. }) = compile(&text) else { panic!("compiled") };
        assert!(reason.starts_with("its YAML expands to more than 524288 nodes"), "{reason}");
    }

    #[test]
    fn refusals_name_the_construct() {
        let cases = [
            ("detection:\n  sel:\n    Provider_Name: x\n  condition: sel\n", "field"),
            ("detection:\n  sel:\n    Image|cidr: 10.0.0.0/8\n  condition: sel\n", "|cidr"),
            ("detection:\n  sel:\n    Image: x\n  condition: sel | count() > 3\n", "aggregation"),
            ("detection:\n  sel:\n    Image: x\n  condition: nothere\n", "condition"),
            ("detection:\n  sel:\n    CommandLine|re: '(?<=a)b'\n  condition: sel\n", "|re"),
        ];
        for (detection, construct) in cases {
            let err = compile(&format!("{HEADER}{detection}")).unwrap_err();
            assert_eq!(err.construct(), construct, "{err}");
        }
        let other = HEADER.replace("process_creation", "file_event");
        let err =
            compile(&format!("{other}detection:\n  sel:\n    Image: x\n  condition: sel\n")).unwrap_err();
        assert_eq!(err.construct(), "logsource");
    }
}
