//! The compiled form of a set of Sigma rules: what the host's compiler writes into a pack and
//! what the pack's matcher reads. Every Sigma construct is resolved at compile time (escapes,
//! modifiers, `x of` conditions, field names), so the matcher only walks boolean trees of
//! simple tests.

use serde::{Deserialize, Serialize};

/// The version of this data format; a pack whose data has another is refused. 2: postcard
/// (1 was JSON, which took most of a pack's start to read).
pub const FORMAT: u32 = 2;

/// A set of compiled rules, in the order they were given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pack {
    /// [`FORMAT`].
    pub format: u32,
    /// The rules.
    pub rules: Vec<Rule>,
}

impl Pack {
    /// The bytes a pack carries: the format number, then the rules in postcard (compact, and
    /// read several times faster than JSON in the guest).
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("a pack serializes")
    }

    /// Reads [`Pack::encode`]'s bytes.
    pub fn decode(bytes: &[u8]) -> Result<Pack, String> {
        let pack: Pack =
            postcard::from_bytes(bytes).map_err(|e| format!("the pack's data does not read: {e}"))?;
        if pack.format != FORMAT {
            return Err(format!("pack data format {} (this matcher reads format {FORMAT})", pack.format));
        }
        Ok(pack)
    }
}

/// One compiled Sigma rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    /// The rule's `id`.
    pub id: String,
    /// The rule's version: its `modified` date, or its `date`.
    pub version: String,
    /// The rule's `title`.
    pub title: String,
    /// The rule's `description`.
    pub description: String,
    /// The rule's `level`.
    pub level: Level,
    /// ATT&CK tactics from its `attack.<tactic>` tags, by name (`Defense Evasion`).
    pub tactics: Vec<String>,
    /// ATT&CK techniques from its `attack.tNNNN` tags (`T1218.011`).
    pub techniques: Vec<String>,
    /// The whole detection: the condition with every selection put in place.
    pub condition: Expr,
}

/// Sigma's `level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// `informational`.
    Informational,
    /// `low`.
    Low,
    /// `medium`.
    Medium,
    /// `high`.
    High,
    /// `critical`.
    Critical,
}

/// A boolean expression over tests. `And([])` is true, `Or([])` is false.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Expr {
    /// Every operand holds.
    And(Vec<Expr>),
    /// At least one operand holds.
    Or(Vec<Expr>),
    /// The operand does not hold.
    Not(Box<Expr>),
    /// One test of one value.
    Test(Test),
}

/// One test: a value of the event, and what it must be.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Test {
    /// What is tested.
    pub target: Target,
    /// What it must be.
    pub check: Check,
}

/// What a test reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// One value of the event.
    View(View),
    /// A keyword (a value without a field): any of [`KEYWORD_VIEWS`] passes.
    Keyword,
}

/// What a value must be.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    /// Matches the wildcard pattern, case-insensitively.
    Pattern(Pattern),
    /// The regular expression finds a match somewhere in the value (it is not anchored).
    Regex {
        /// The expression, in Rust `regex` syntax.
        pattern: String,
        /// `re|i`.
        ignore_case: bool,
        /// `re|m`.
        multi_line: bool,
        /// `re|s`.
        dot_all: bool,
    },
    /// The value is absent or empty (Sigma's `null`).
    Empty,
    /// Equal, case-insensitively, to another value of the same event (`fieldref`).
    EqualsView(View),
    /// Matches the wildcard pattern case-sensitively (`cased`): its text is as written, not
    /// folded, and so is the value it is matched against.
    CasedPattern(Pattern),
}

/// A wildcard pattern, matched against the whole value. Its text is case-folded with
/// [`fold`] at compile time, and the value is folded the same way before it is matched; in a
/// [`Check::CasedPattern`], neither is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Pattern(pub Vec<Piece>);

/// One piece of a [`Pattern`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Piece {
    /// This text, folded.
    Text(String),
    /// `*`: any run of characters, the empty one too.
    AnyRun,
    /// `?`: exactly one character.
    AnyChar,
}

impl Pattern {
    /// The longest text piece: a value that matches the pattern contains it.
    pub fn required_text(&self) -> Option<&str> {
        self.0
            .iter()
            .filter_map(|piece| match piece {
                Piece::Text(text) => Some(text.as_str()),
                _ => None,
            })
            .max_by_key(|text| text.len())
    }
}

/// Case folding for case-insensitive matching: every character lower-cased on its own (so that
/// a pattern folded in pieces and a value folded whole agree), Unicode and not only ASCII.
pub fn fold(text: &str, into: &mut String) {
    into.clear();
    if is_ascii(text.as_bytes()) {
        into.push_str(text);
        into.make_ascii_lowercase();
    } else {
        into.extend(text.chars().flat_map(char::to_lowercase));
    }
}

/// Whether every byte of `bytes` is ASCII, sixteen bytes per turn of the loop. The standard
/// library's test reads a `usize` per turn, four bytes in Wasm, where each turn of a loop also
/// checks the deadline's epoch (the catalog in Wasm: 13.1-13.2 → 12.9-13.0 µs per real event).
fn is_ascii(bytes: &[u8]) -> bool {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let word = |chunk: &[u8]| u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
    let mut chunks = bytes.chunks_exact(16);
    let mut high = 0;
    for chunk in &mut chunks {
        high |= word(&chunk[..8]) | word(&chunk[8..]);
    }
    high & HIGH == 0 && chunks.remainder().is_ascii()
}

/// [`fold`] into a new string.
pub fn folded(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    fold(text, &mut out);
    out
}

macro_rules! columns {
    ($($variant:ident $name:literal,)*) => {
        /// A column of the contract's process event that Sigma rules read, by its contract
        /// name.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum Column {
            $(
                #[doc = concat!("`", $name, "`")]
                #[serde(rename = $name)]
                $variant,
            )*
        }

        impl Column {
            /// Every column.
            pub const ALL: &[Column] = &[$(Column::$variant,)*];

            /// The contract's name of the column.
            pub fn name(self) -> &'static str {
                match self {
                    $(Column::$variant => $name,)*
                }
            }
        }
    };
}

columns! {
    DeviceId "DeviceId",
    DeviceName "DeviceName",
    FileName "FileName",
    FolderPath "FolderPath",
    ProcessId "ProcessId",
    ProcessCommandLine "ProcessCommandLine",
    ProcessIntegrityLevel "ProcessIntegrityLevel",
    AccountDomain "AccountDomain",
    AccountName "AccountName",
    Sha1 "SHA1",
    Sha256 "SHA256",
    Md5 "MD5",
    Imphash "IMPHASH",
    InitiatingProcessFileName "InitiatingProcessFileName",
    InitiatingProcessFolderPath "InitiatingProcessFolderPath",
    InitiatingProcessCommandLine "InitiatingProcessCommandLine",
    InitiatingProcessId "InitiatingProcessId",
    InitiatingProcessAccountDomain "InitiatingProcessAccountDomain",
    InitiatingProcessAccountName "InitiatingProcessAccountName",
    InitiatingProcessParentFolderPath "InitiatingProcessParentFolderPath",
    ProcessVersionInfoOriginalFileName "ProcessVersionInfoOriginalFileName",
    ProcessVersionInfoFileDescription "ProcessVersionInfoFileDescription",
    ProcessVersionInfoProductName "ProcessVersionInfoProductName",
    ProcessVersionInfoCompanyName "ProcessVersionInfoCompanyName",
    ProcessVersionInfoProductVersion "ProcessVersionInfoProductVersion",
    ProcessCurrentDirectory "ProcessCurrentDirectory",
    LogonId "LogonId",
}

/// A value of the event as a Sigma rule names it: a column, or one made of several.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum View {
    /// One column as it is.
    Column(Column),
    /// `AccountDomain\AccountName` (the name alone when there is no domain), as Sysmon's `User`.
    User,
    /// The same of the parent's account.
    ParentUser,
    /// `SHA1=..,MD5=..,SHA256=..,IMPHASH=..` of the hashes present, as Sysmon's `Hashes`.
    Hashes,
}

impl View {
    /// The columns this view is made of.
    pub fn columns(self) -> &'static [Column] {
        match self {
            // ALL lists the columns in declaration order.
            View::Column(column) => std::slice::from_ref(&Column::ALL[column as usize]),
            View::User => &[Column::AccountDomain, Column::AccountName],
            View::ParentUser => {
                &[Column::InitiatingProcessAccountDomain, Column::InitiatingProcessAccountName]
            }
            View::Hashes => &[Column::Sha1, Column::Md5, Column::Sha256, Column::Imphash],
        }
    }
}

/// The Sigma field names of Windows process creation this compiler knows, and the value of the
/// event each one reads (the field names of Sysmon event 1, as the catalog uses them; the
/// columns after Defender's `DeviceProcessEvents`).
pub const SIGMA_FIELDS: &[(&str, View)] = &[
    ("CommandLine", View::Column(Column::ProcessCommandLine)),
    ("Image", View::Column(Column::FolderPath)),
    ("OriginalFileName", View::Column(Column::ProcessVersionInfoOriginalFileName)),
    ("ParentImage", View::Column(Column::InitiatingProcessFolderPath)),
    ("ParentCommandLine", View::Column(Column::InitiatingProcessCommandLine)),
    ("Description", View::Column(Column::ProcessVersionInfoFileDescription)),
    ("Product", View::Column(Column::ProcessVersionInfoProductName)),
    ("Company", View::Column(Column::ProcessVersionInfoCompanyName)),
    ("FileVersion", View::Column(Column::ProcessVersionInfoProductVersion)),
    ("CurrentDirectory", View::Column(Column::ProcessCurrentDirectory)),
    ("IntegrityLevel", View::Column(Column::ProcessIntegrityLevel)),
    ("User", View::User),
    ("ParentUser", View::ParentUser),
    ("LogonId", View::Column(Column::LogonId)),
    ("Hashes", View::Hashes),
    ("Imphash", View::Column(Column::Imphash)),
    ("md5", View::Column(Column::Md5)),
    ("sha1", View::Column(Column::Sha1)),
    ("sha256", View::Column(Column::Sha256)),
    ("ProcessId", View::Column(Column::ProcessId)),
    ("ParentProcessId", View::Column(Column::InitiatingProcessId)),
    ("GrandParentImage", View::Column(Column::InitiatingProcessParentFolderPath)),
    ("Computer", View::Column(Column::DeviceName)),
];

/// The view a Sigma field name reads (names are case-sensitive, as in the catalog).
pub fn view_of(sigma_field: &str) -> Option<View> {
    SIGMA_FIELDS.iter().find(|(name, _)| *name == sigma_field).map(|(_, view)| *view)
}

/// The values a keyword (a detection value without a field) is searched in: the text of the
/// process event, as a full-text search would see it.
pub const KEYWORD_VIEWS: &[View] = &[
    View::Column(Column::ProcessCommandLine),
    View::Column(Column::FolderPath),
    View::Column(Column::InitiatingProcessCommandLine),
    View::Column(Column::InitiatingProcessFolderPath),
    View::Column(Column::ProcessVersionInfoOriginalFileName),
    View::Column(Column::ProcessVersionInfoFileDescription),
    View::Column(Column::ProcessVersionInfoProductName),
    View::Column(Column::ProcessVersionInfoCompanyName),
    View::Column(Column::ProcessCurrentDirectory),
    View::User,
    View::Hashes,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_is_ascii_as_the_standard_library_says() {
        for len in 0..50 {
            let ascii: String = (0..len).map(|i| char::from(b'A' + (i % 26) as u8)).collect();
            assert!(is_ascii(ascii.as_bytes()), "{len} ASCII bytes");
            for at in 0..len {
                // A two-byte character in place of each byte in turn.
                let mut text = ascii.clone();
                text.replace_range(at..at + 1, "È");
                assert!(!is_ascii(text.as_bytes()), "{text:?}");
                assert_eq!(folded(&text), text.to_lowercase(), "{text:?}");
            }
            assert_eq!(folded(&ascii), ascii.to_ascii_lowercase());
        }
    }
}
