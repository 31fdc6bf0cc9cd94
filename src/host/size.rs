//! Sizes as the configuration file and the command lines write them: a number of bytes, or a
//! number with a binary unit (`"64 KiB"`, `"2 MiB"`). Shared by [`crate::host::config`] and
//! [`crate::host::consoles`].

use serde::{Deserialize, Serialize};

/// A size written as a number of bytes or a string such as `"2 MiB"`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(untagged)]
pub(crate) enum SizeValue {
    Bytes(u64),
    Text(String),
}

impl SizeValue {
    /// The size in bytes, or why it is not one.
    pub(crate) fn bytes(self) -> Result<u64, String> {
        match self {
            SizeValue::Bytes(n) => Ok(n),
            SizeValue::Text(t) => parse_size(&t),
        }
    }
}

/// Parses a size: a plain number of bytes, or a number with a unit (`K`, `KiB`, `KB`, `M`, `MiB`,
/// `G`, `GiB`; all binary, case-insensitive), with optional space in between.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{text:?} is not a size such as 65536, \"64 KiB\" or \"2 MiB\""))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => return Err(format!("unknown size unit {other:?} in {text:?}")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size {text:?} is too large"))
}
