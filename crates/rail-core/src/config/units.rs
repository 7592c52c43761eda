//! Durations and sizes written the way people write them: `300s`, `1m 30s`, `1GiB`, `500 MB`.
//!
//! Both also accept a bare number, as the older JSON files did (`"health_check_timeout": 300` is seconds,
//! a bare size is bytes).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration read from `"300s"`, `"1h 30m"` or a number of seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    pub const fn from_secs(secs: u64) -> Self {
        Self(Duration::from_secs(secs))
    }

    pub const fn from_millis(ms: u64) -> Self {
        Self(Duration::from_millis(ms))
    }

    pub const fn get(self) -> Duration {
        self.0
    }
}

impl From<HumanDuration> for Duration {
    fn from(d: HumanDuration) -> Self {
        d.0
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&human_duration(self.0))
    }
}

/// A duration as a person reads it, rounded to what matters at its size: `850ms`, `29s 920ms`,
/// `1m 3s`, `2h 5m 7s`; never `29s 923ms 873us 970ns`.
pub fn human_duration(duration: Duration) -> String {
    let rounded = if duration >= Duration::from_secs(60) {
        Duration::from_secs(duration.as_secs())
    } else if duration >= Duration::from_secs(1) {
        Duration::from_millis(duration.as_millis() as u64 / 10 * 10)
    } else {
        Duration::from_millis(duration.as_millis() as u64)
    };
    humantime::format_duration(rounded).to_string()
}

impl FromStr for HumanDuration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let trimmed = s.trim();
        if let Ok(secs) = trimmed.parse::<u64>() {
            return Ok(Self::from_secs(secs));
        }
        humantime::parse_duration(trimmed)
            .map(Self)
            .map_err(|e| format!("`{s}` is not a duration ({e}); write e.g. `30s`, `5m`, `1h 30m`"))
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = HumanDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as \"30s\" or \"5m\", or a number of seconds")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(HumanDuration::from_secs(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                u64::try_from(v)
                    .map(HumanDuration::from_secs)
                    .map_err(|_| E::custom(format!("a duration cannot be negative ({v})")))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                if v.is_finite() && v >= 0.0 {
                    Ok(HumanDuration(Duration::from_secs_f64(v)))
                } else {
                    Err(E::custom(format!("`{v}` is not a duration")))
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                v.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// A size read from `"1GiB"`, `"500 MB"` or a number of bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub const fn bytes(self) -> u64 {
        self.0
    }

    pub const fn mib(n: u64) -> Self {
        Self(n * 1024 * 1024)
    }

    pub const fn gib(n: u64) -> Self {
        Self(n * 1024 * 1024 * 1024)
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", bytesize::ByteSize(self.0).display().iec())
    }
}

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let trimmed = s.trim();
        if let Ok(bytes) = trimmed.parse::<u64>() {
            return Ok(Self(bytes));
        }
        trimmed.parse::<bytesize::ByteSize>().map(|b| Self(b.as_u64())).map_err(|e| {
            format!("`{s}` is not a size ({e}); write e.g. `512MiB`, `1GiB`, `500 MB`")
        })
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size such as \"1GiB\" or \"500 MB\", or a number of bytes")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(ByteSize(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom(format!("a size cannot be negative ({v})")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                v.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_any(V)
    }
}

impl schemars::JsonSchema for HumanDuration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A duration such as \"30s\", \"5m\", \"1m 30s\" or \"250ms\", or a number of seconds",
            "type": ["string", "number"],
            "minimum": 0
        })
    }
}

impl schemars::JsonSchema for ByteSize {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ByteSize".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A size such as \"1GiB\", \"512 MiB\" or \"500 MB\", or a number of bytes",
            "type": ["string", "integer"],
            "minimum": 0
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_every_form() {
        assert_eq!("300s".parse::<HumanDuration>().unwrap(), HumanDuration::from_secs(300));
        assert_eq!("300".parse::<HumanDuration>().unwrap(), HumanDuration::from_secs(300));
        assert_eq!("1m 30s".parse::<HumanDuration>().unwrap(), HumanDuration::from_secs(90));
        assert_eq!("250ms".parse::<HumanDuration>().unwrap(), HumanDuration::from_millis(250));
        let err = "soon".parse::<HumanDuration>().unwrap_err();
        assert!(err.contains("`soon` is not a duration"), "{err}");
        let from_json: HumanDuration = serde_json::from_str("300").unwrap();
        assert_eq!(from_json, HumanDuration::from_secs(300));
        assert!(serde_json::from_str::<HumanDuration>("-1").is_err());
        assert_eq!(serde_json::to_string(&HumanDuration::from_secs(90)).unwrap(), "\"1m 30s\"");
    }

    #[test]
    fn sizes_in_every_form() {
        assert_eq!("1GiB".parse::<ByteSize>().unwrap(), ByteSize::gib(1));
        assert_eq!("512 MiB".parse::<ByteSize>().unwrap(), ByteSize::mib(512));
        assert_eq!("500MB".parse::<ByteSize>().unwrap(), ByteSize(500_000_000));
        assert_eq!("4096".parse::<ByteSize>().unwrap(), ByteSize(4096));
        assert!("lots".parse::<ByteSize>().unwrap_err().contains("`lots` is not a size"));
        assert_eq!(ByteSize::gib(1).to_string(), "1.0 GiB");
    }
}

#[cfg(test)]
mod duration_tests {
    use super::*;

    #[test]
    fn durations_print_rounded_to_what_matters() {
        let cases = [
            (Duration::new(29, 923_873_970), "29s 920ms"),
            (Duration::from_nanos(850_400_001), "850ms"),
            (Duration::from_micros(12), "0s"),
            (Duration::new(63, 999_999_999), "1m 3s"),
            (Duration::from_secs(7507), "2h 5m 7s"),
        ];
        for (duration, want) in cases {
            assert_eq!(human_duration(duration), want);
        }
        assert_eq!(HumanDuration(Duration::new(29, 923_873_970)).to_string(), "29s 920ms");
    }
}
