//! Playbook durations: `30s`, `15m`, `4h`, `3d`, `2w` and combinations such as `1d12h`.

use serde::{Deserialize, Deserializer};
use std::fmt;
use std::str::FromStr;

/// A span of time written the playbook way. Kept in whole seconds: no rule needs finer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Span(i64);

impl Span {
    pub const fn from_secs(secs: i64) -> Self {
        Span(secs)
    }

    pub fn secs(self) -> i64 {
        self.0
    }

    pub fn to_chrono(self) -> chrono::Duration {
        chrono::Duration::seconds(self.0)
    }
}

/// Why a duration did not parse, phrased for the marketer who wrote it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {reason}; write e.g. 30s, 15m, 4h, 3d, 2w or 1d12h")]
pub struct SpanError {
    input: String,
    reason: &'static str,
}

impl FromStr for Span {
    type Err = SpanError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let fail = |reason| SpanError {
            input: input.to_owned(),
            reason,
        };
        let text = input.trim();
        if text.is_empty() {
            return Err(fail("it is empty"));
        }
        let mut total: i64 = 0;
        let mut digits = String::new();
        for c in text.chars() {
            if c.is_ascii_digit() {
                digits.push(c);
                continue;
            }
            let unit = match c {
                's' => 1,
                'm' => 60,
                'h' => 3_600,
                'd' => 86_400,
                'w' => 604_800,
                _ => return Err(fail("units are s, m, h, d and w")),
            };
            if digits.is_empty() {
                return Err(fail("each unit needs a number before it"));
            }
            let n: i64 = digits.parse().map_err(|_| fail("the number is too large"))?;
            total = n
                .checked_mul(unit)
                .and_then(|s| total.checked_add(s))
                .ok_or_else(|| fail("the number is too large"))?;
            digits.clear();
        }
        if !digits.is_empty() {
            return Err(fail("a number lacks its unit"));
        }
        if total == 0 {
            return Err(fail("it must be longer than zero"));
        }
        Ok(Span(total))
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        for (unit, secs) in [("w", 604_800), ("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
            if rest >= secs {
                write!(f, "{}{unit}", rest / secs)?;
                rest %= secs;
            }
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for Span {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^\\s*([0-9]+[smhdw])+\\s*$",
            "description": "A duration: 30s, 15m, 4h, 3d, 2w, or combinations such as 1d12h.",
            "examples": ["3d", "4h", "1d12h"]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expect: Result<i64, &str>) {
        let got = input.parse::<Span>().map(Span::secs).map_err(|e| e.to_string());
        match expect {
            Ok(secs) => assert_eq!(got, Ok(secs), "{input}"),
            Err(fragment) => {
                let message = got.expect_err(input);
                assert!(message.contains(fragment), "{input}: {message}");
            }
        }
    }

    #[test]
    fn units() {
        check("30s", Ok(30));
        check("15m", Ok(900));
        check("4h", Ok(14_400));
        check("3d", Ok(259_200));
        check("2w", Ok(1_209_600));
        check("1d12h", Ok(129_600));
    }

    #[test]
    fn refusals() {
        check("", Err("empty"));
        check("3", Err("lacks its unit"));
        check("d", Err("needs a number"));
        check("3y", Err("units are"));
        check("0d", Err("longer than zero"));
        check("99999999999999999999d", Err("too large"));
    }

    #[test]
    fn displays_back() {
        assert_eq!("1d12h".parse::<Span>().unwrap().to_string(), "1d12h");
    }
}
