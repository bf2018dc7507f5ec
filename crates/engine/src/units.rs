//! Sizes and durations as restic reads and prints them: the one size parser, the byte
//! formatters and Go's duration syntax every command shares.

use std::num::ParseIntError;
use std::str::FromStr;
use std::time::Duration;

use crate::{EngineError, Result};

/// Why a size string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    /// The number part is not a decimal integer of the wanted range.
    #[error("{0}")]
    Number(#[from] ParseIntError),
    /// The number times its unit does not fit.
    #[error("too large")]
    Overflow,
}

/// The integer types a size is read into: `u64` for limits, `i64` where restic reads a
/// signed number and judges its sign later (`check --read-data-subset`).
pub trait SizeInt: FromStr<Err = ParseIntError> + Copy {
    /// `self * 2^shift`, or `None` when it does not fit.
    fn scale(self, shift: u32) -> Option<Self>;
}

impl SizeInt for u64 {
    fn scale(self, shift: u32) -> Option<u64> {
        self.checked_mul(1 << shift)
    }
}

impl SizeInt for i64 {
    fn scale(self, shift: u32) -> Option<i64> {
        self.checked_mul(1 << shift)
    }
}

/// restic's size syntax (`ui.ParseBytes`, 0.14's `parseSizeStr`): a decimal integer with
/// an optional suffix b, k, m, g or t in either case, for powers of 1024. The string is
/// taken as it is (no trimming), and the number is parsed as `T` parses it: a sign only
/// where `T` is signed.
pub fn parse_bytes<T: SizeInt>(s: &str) -> std::result::Result<T, SizeError> {
    let shift = match s.as_bytes().last().map(u8::to_ascii_lowercase) {
        Some(b'b') => Some(0),
        Some(b'k') => Some(10),
        Some(b'm') => Some(20),
        Some(b'g') => Some(30),
        Some(b't') => Some(40),
        _ => None,
    };
    let (num, shift) = match shift {
        Some(shift) => (&s[..s.len() - 1], shift),
        None => (s, 0),
    };
    num.parse::<T>()?.scale(shift).ok_or(SizeError::Overflow)
}

/// A size flag (prune's `--max-unused` and `--max-repack-size`, backup's sizes):
/// surrounding blanks ignored, never negative, in bytes.
pub fn parse_size(s: &str) -> Result<u64> {
    let s = s.trim();
    parse_bytes::<u64>(s).map_err(|e| match e {
        SizeError::Number(e) => EngineError::Usage(format!("invalid size {s:?}: {e}")),
        SizeError::Overflow => EngineError::Usage(format!("size {s:?} is too large")),
    })
}

/// How a formatter picks its unit at an exact power of 1024.
#[derive(Clone, Copy)]
enum Boundary {
    /// `ui.FormatBytes`: 1024 is "1.000 KiB".
    Inclusive,
    /// restic 0.14's `cmd/restic` `formatBytes`: 1024 is still "1024 B".
    Exclusive,
}

fn format_with(c: u64, boundary: Boundary) -> String {
    const UNITS: [(u32, &str); 4] = [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")];
    let b = c as f64;
    for (shift, unit) in UNITS {
        let limit = 1u64 << shift;
        let above = match boundary {
            Boundary::Inclusive => c >= limit,
            Boundary::Exclusive => c > limit,
        };
        if above {
            return format!("{:.3} {unit}", b / limit as f64);
        }
    }
    format!("{c} B")
}

/// restic's `ui.FormatBytes` ("1.000 KiB" from 1024 on): prune's statistics, the backup
/// summary, leftovers.
pub fn format_bytes(c: u64) -> String {
    format_with(c, Boundary::Inclusive)
}

/// restic 0.14's `formatBytes` of `stats`, `diff` and `cache`, which switches to the
/// larger unit only above a power of 1024 ("1024 B"); their output is compared with
/// restic's byte for byte.
pub fn format_bytes_above(c: u64) -> String {
    format_with(c, Boundary::Exclusive)
}

/// A duration flag in Go's `time.ParseDuration` syntax, as restic's `--retry-lock` takes
/// it: decimal numbers with an optional fraction, each with a unit (`ns`, `us`, `µs`,
/// `ms`, `s`, `m`, `h`), concatenated (`1h30m`, `1.5s`); `0` alone needs no unit.
/// Negative durations are refused: every restash flag that takes one means "how long".
pub fn parse_duration(s: &str) -> Result<Duration> {
    let bad = |why: &str| EngineError::Usage(format!("invalid duration {s:?}: {why}"));
    let mut rest = s.trim();
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(bad("empty"));
    }
    if rest.starts_with('-') {
        return Err(bad("a duration cannot be negative"));
    }
    rest = rest.strip_prefix('+').unwrap_or(rest);
    let mut nanos: f64 = 0.0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, tail) = rest.split_at(num_len);
        let value: f64 = match num {
            "" | "." => return Err(bad("expected a number")),
            n => n.parse().map_err(|_| bad("expected a number"))?,
        };
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_len);
        let scale = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "" => return Err(bad("missing unit (use h, m, s, ms, us or ns)")),
            _ => return Err(bad(&format!("unknown unit {unit:?}"))),
        };
        nanos += value * scale;
        rest = next;
    }
    // Go's limit: about 290 years.
    if nanos > i64::MAX as f64 {
        return Err(bad("too large"));
    }
    Ok(Duration::from_nanos(nanos as u64))
}

/// `d` as Go's `Duration.String` prints it (`5m0s`, `2h0m0s`, `1.5s`, `250ms`), for
/// messages that quote a flag's value back as restic does.
pub fn format_duration(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns == 0 {
        return "0s".into();
    }
    let frac = |n: u128, unit: u128, digits: usize| -> String {
        let whole = n / unit;
        let part = n % unit;
        if part == 0 {
            return whole.to_string();
        }
        let s = format!("{whole}.{part:0digits$}");
        s.trim_end_matches('0').to_string()
    };
    if ns < 1_000 {
        return format!("{ns}ns");
    }
    if ns < 1_000_000 {
        return format!("{}µs", frac(ns, 1_000, 3));
    }
    if ns < 1_000_000_000 {
        return format!("{}ms", frac(ns, 1_000_000, 6));
    }
    let secs = frac(ns % 60_000_000_000, 1_000_000_000, 9);
    let total_min = ns / 60_000_000_000;
    let (h, m) = (total_min / 60, total_min % 60);
    match (h, total_min) {
        (0, 0) => format!("{secs}s"),
        (0, _) => format!("{m}m{secs}s"),
        _ => format!("{h}h{m}m{secs}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_like_restic() {
        assert_eq!(parse_bytes::<u64>("0"), Ok(0));
        assert_eq!(parse_bytes::<u64>("512B"), Ok(512));
        assert_eq!(parse_bytes::<u64>("512b"), Ok(512));
        assert_eq!(parse_bytes::<u64>("10k"), Ok(10 << 10));
        assert_eq!(parse_bytes::<u64>("10K"), Ok(10 << 10));
        assert_eq!(parse_bytes::<u64>("3m"), Ok(3 << 20));
        assert_eq!(parse_bytes::<u64>("1G"), Ok(1 << 30));
        assert_eq!(parse_bytes::<u64>("2t"), Ok(2 << 40));
        assert_eq!(parse_bytes::<i64>("-5k"), Ok(-5 << 10));
        assert_eq!(parse_bytes::<i64>("+5"), Ok(5));
        assert!(matches!(
            parse_bytes::<u64>("-5"),
            Err(SizeError::Number(_))
        ));
        for bad in ["", "k", "12q", " 1k", "1k ", "1.5G", "1kb", "0x10"] {
            assert!(parse_bytes::<i64>(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(parse_bytes::<u64>("99999999999T"), Err(SizeError::Overflow));
        assert_eq!(parse_bytes::<i64>("8388608T"), Err(SizeError::Overflow));
    }

    #[test]
    fn size_flags_trim_and_name_the_problem() {
        assert_eq!(parse_size(" 1k ").unwrap(), 1024);
        assert_eq!(parse_size("18446744073709551615").unwrap(), u64::MAX);
        let msg = |s| parse_size(s).unwrap_err().to_string();
        assert!(
            msg("x").contains("invalid size \"x\": invalid digit"),
            "{}",
            msg("x")
        );
        assert!(msg("-1").contains("invalid size \"-1\""));
        assert!(msg("99999999999T").contains("size \"99999999999T\" is too large"));
    }

    #[test]
    fn bytes_are_formatted_like_restic() {
        assert_eq!(format_bytes(0), "0 B");
        assert_eq!(format_bytes(1023), "1023 B");
        assert_eq!(format_bytes(1024), "1.000 KiB");
        assert_eq!(format_bytes(1536), "1.500 KiB");
        assert_eq!(format_bytes(5 << 20), "5.000 MiB");
        assert_eq!(format_bytes(3 << 30), "3.000 GiB");
        assert_eq!(format_bytes(1 << 40), "1.000 TiB");
        assert_eq!(format_bytes(u64::MAX), "16777216.000 TiB");
        assert_eq!(format_bytes_above(1024), "1024 B");
        assert_eq!(format_bytes_above(1025), "1.001 KiB");
        assert_eq!(format_bytes_above(1 << 20), "1024.000 KiB");
        assert_eq!(format_bytes_above(1 << 30), "1024.000 MiB");
        assert_eq!(format_bytes_above(1 << 40), "1024.000 GiB");
        assert_eq!(format_bytes_above((1 << 40) + 1), "1.000 TiB");
    }

    #[test]
    fn go_durations_parse() {
        let d = |s: &str| parse_duration(s).unwrap();
        assert_eq!(d("0"), Duration::ZERO);
        assert_eq!(d("5m"), Duration::from_secs(300));
        assert_eq!(d("2h"), Duration::from_secs(7200));
        assert_eq!(d("1h30m"), Duration::from_secs(5400));
        assert_eq!(d("1.5s"), Duration::from_millis(1500));
        assert_eq!(d("250ms"), Duration::from_millis(250));
        assert_eq!(d("10us"), Duration::from_micros(10));
        assert_eq!(d("3ns"), Duration::from_nanos(3));
        for bad in ["", "5", "-1m", "1x", "m", "1h-5m", ".s", "1e3s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn go_durations_print() {
        let f = format_duration;
        assert_eq!(f(Duration::from_secs(300)), "5m0s");
        assert_eq!(f(Duration::from_secs(7200)), "2h0m0s");
        assert_eq!(f(Duration::from_secs(5430)), "1h30m30s");
        assert_eq!(f(Duration::from_millis(1500)), "1.5s");
        assert_eq!(f(Duration::from_millis(250)), "250ms");
        assert_eq!(f(Duration::ZERO), "0s");
        assert_eq!(f(Duration::from_secs(59)), "59s");
    }
}
