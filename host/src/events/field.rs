//! The fields of the normalized process event, named after `DeviceProcessEvents`.

/// Calls `$callback!` with every field of the contract's `field` enum, in contract order:
/// `Variant "ColumnName"`, in two groups: the fields of contracts 0.1.0 and 0.2.0, then those
/// 0.3.0 added. One list serves the host's own enum and its conversions to the generated
/// bindings of each version, so they cannot drift apart.
macro_rules! for_each_field {
    ($callback:ident) => {
        $callback! {
            [
            Timestamp "Timestamp",
            DeviceId "DeviceId",
            DeviceName "DeviceName",
            ActionType "ActionType",
            FileName "FileName",
            FolderPath "FolderPath",
            ProcessId "ProcessId",
            ProcessCommandLine "ProcessCommandLine",
            ProcessCreationTime "ProcessCreationTime",
            ProcessIntegrityLevel "ProcessIntegrityLevel",
            ProcessTokenElevation "ProcessTokenElevation",
            AccountDomain "AccountDomain",
            AccountName "AccountName",
            AccountSid "AccountSid",
            Sha1 "SHA1",
            Sha256 "SHA256",
            Md5 "MD5",
            InitiatingProcessFileName "InitiatingProcessFileName",
            InitiatingProcessFolderPath "InitiatingProcessFolderPath",
            InitiatingProcessCommandLine "InitiatingProcessCommandLine",
            InitiatingProcessId "InitiatingProcessId",
            InitiatingProcessCreationTime "InitiatingProcessCreationTime",
            InitiatingProcessAccountDomain "InitiatingProcessAccountDomain",
            InitiatingProcessAccountName "InitiatingProcessAccountName",
            InitiatingProcessAccountSid "InitiatingProcessAccountSid",
            InitiatingProcessParentFileName "InitiatingProcessParentFileName",
            InitiatingProcessParentId "InitiatingProcessParentId",
            ReportId "ReportId",
            SourceFormat "SourceFormat",
            SourceFile "SourceFile",
            SourceLine "SourceLine",
            ]
            [
            ProcessVersionInfoOriginalFileName "ProcessVersionInfoOriginalFileName",
            ProcessVersionInfoFileDescription "ProcessVersionInfoFileDescription",
            ProcessVersionInfoProductName "ProcessVersionInfoProductName",
            ProcessVersionInfoCompanyName "ProcessVersionInfoCompanyName",
            ProcessVersionInfoProductVersion "ProcessVersionInfoProductVersion",
            ProcessCurrentDirectory "ProcessCurrentDirectory",
            LogonId "LogonId",
            Imphash "IMPHASH",
            InitiatingProcessParentFolderPath "InitiatingProcessParentFolderPath",
            ]
        }
    };
}
pub(crate) use for_each_field;

macro_rules! define_field {
    ([$($old:ident $old_name:literal,)*] [$($new:ident $new_name:literal,)*]) => {
        define_field!(@ $($old $old_name,)* $($new $new_name,)*);
        impl Field {
            /// Whether contracts before 0.3.0 have the field.
            pub fn before_0_3(self) -> bool {
                matches!(self, $(Field::$old)|*)
            }
        }
    };
    (@ $($variant:ident $name:literal,)*) => {
        /// One column of the normalized process event.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Field {
            $(
                #[doc = concat!("`", $name, "`")]
                $variant,
            )*
        }

        impl Field {
            /// Every field, in contract order.
            pub const ALL: &[Field] = &[$(Field::$variant,)*];

            /// The column name, as in `DeviceProcessEvents`.
            pub fn name(self) -> &'static str {
                match self {
                    $(Field::$variant => $name,)*
                }
            }

            /// The field with the column name `name` (exact case).
            pub fn from_name(name: &str) -> Option<Field> {
                match name {
                    $($name => Some(Field::$variant),)*
                    _ => None,
                }
            }
        }
    };
}
for_each_field!(define_field);

/// The number of fields.
pub const FIELD_COUNT: usize = Field::ALL.len();

impl Field {
    /// The fields that describe where the event came from rather than the process.
    pub fn is_source(self) -> bool {
        matches!(self, Field::SourceFormat | Field::SourceFile | Field::SourceLine)
    }
}

impl std::fmt::Display for Field {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for &field in Field::ALL {
            assert_eq!(Field::from_name(field.name()), Some(field));
        }
        assert_eq!(Field::from_name("filename"), None);
        assert_eq!(FIELD_COUNT, 40);
        assert_eq!(Field::ALL.iter().filter(|f| f.before_0_3()).count(), 31);
    }
}
