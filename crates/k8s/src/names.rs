//! Checks for the names and values the API server would reject (the JSON schemas used by
//! validators do not check them), and short stable object names derived from PVC names.

use crate::K8sError;

fn bad(what: &str, value: &str, rule: &str) -> K8sError {
    K8sError::Invalid {
        what: what.to_string(),
        value: value.to_string(),
        rule: rule.to_string(),
    }
}

fn is_lower_alnum(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// A DNS-1123 label (namespaces): at most 63 of `a-z 0-9 -`, alphanumeric at both ends.
pub fn check_dns_label(what: &str, s: &str) -> Result<(), K8sError> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.chars().all(|c| is_lower_alnum(c) || c == '-')
        && s.starts_with(is_lower_alnum)
        && s.ends_with(is_lower_alnum);
    if ok {
        Ok(())
    } else {
        Err(bad(
            what,
            s,
            "a DNS-1123 label: at most 63 characters a-z, 0-9 and '-', starting and ending \
             with a letter or digit",
        ))
    }
}

/// A DNS-1123 subdomain (PVCs, Secrets): at most 253 characters, dot-separated labels.
pub fn check_dns_subdomain(what: &str, s: &str) -> Result<(), K8sError> {
    let ok = !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.chars().all(|c| is_lower_alnum(c) || c == '-')
                && l.starts_with(is_lower_alnum)
                && l.ends_with(is_lower_alnum)
        });
    if ok {
        Ok(())
    } else {
        Err(bad(
            what,
            s,
            "a DNS-1123 subdomain: at most 253 characters a-z, 0-9, '-' and '.', each \
             dot-separated part starting and ending with a letter or digit",
        ))
    }
}

fn is_label_value(s: &str) -> bool {
    s.is_empty()
        || (s.len() <= 63
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && s.starts_with(|c: char| c.is_ascii_alphanumeric())
            && s.ends_with(|c: char| c.is_ascii_alphanumeric()))
}

/// A label value: at most 63 of `A-Z a-z 0-9 - _ .`, alphanumeric at both ends. Non-empty here,
/// since an empty user name selects nothing.
pub fn check_label_value(what: &str, s: &str) -> Result<(), K8sError> {
    if !s.is_empty() && is_label_value(s) {
        Ok(())
    } else {
        Err(bad(
            what,
            s,
            "a label value: 1 to 63 characters A-Z, a-z, 0-9, '-', '_' and '.', starting and \
             ending with a letter or digit",
        ))
    }
}

/// A Secret key: `-._a-zA-Z0-9`, at most 253 characters.
pub fn check_secret_key(s: &str) -> Result<(), K8sError> {
    let ok = !s.is_empty()
        && s.len() <= 253
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && s != "."
        && s != ".."
        && !s.starts_with("..");
    if ok {
        Ok(())
    } else {
        Err(bad(
            "secret key",
            s,
            "1 to 253 characters A-Z, a-z, 0-9, '-', '_' and '.', not starting with '..'",
        ))
    }
}

/// An environment variable name, as the API server accepts it.
pub fn check_env_name(s: &str) -> Result<(), K8sError> {
    let ok = !s.is_empty()
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(bad(
            "environment variable name",
            s,
            "letters, digits, '_', '-' and '.', not starting with a digit",
        ))
    }
}

/// A resource quantity such as `250m`, `1`, `512Mi`, `2G` (positive).
pub fn check_quantity(what: &str, s: &str) -> Result<(), K8sError> {
    let num_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(num_end);
    let num_ok = !num.is_empty()
        && num != "."
        && num.matches('.').count() <= 1
        && num.chars().any(|c| c.is_ascii_digit() && c != '0');
    let suffix_ok = matches!(
        suffix,
        "" | "m" | "k" | "M" | "G" | "T" | "P" | "E" | "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei"
    );
    if num_ok && suffix_ok {
        Ok(())
    } else {
        Err(bad(
            what,
            s,
            "a positive Kubernetes quantity such as 250m, 1, 512Mi or 2Gi",
        ))
    }
}

/// The value of a quantity that passed [`check_quantity`], for comparing request and limit.
pub fn quantity_value(s: &str) -> Option<f64> {
    let num_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(num_end);
    let n: f64 = num.parse().ok()?;
    let scale = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        _ => return None,
    };
    Some(n * scale)
}

/// An IANA time zone name such as `UTC` or `America/Chicago`. The API server checks it
/// against its time zone database; this catches the obvious mistakes offline.
pub fn check_time_zone(s: &str) -> Result<(), K8sError> {
    let ok = !s.is_empty()
        && s.split('/').all(|p| {
            !p.is_empty()
                && p != "."
                && p != ".."
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '+'))
        });
    if ok {
        Ok(())
    } else {
        Err(bad(
            "time zone",
            s,
            "an IANA time zone name such as UTC or America/Chicago",
        ))
    }
}

/// A cron schedule: five fields or a macro such as `@daily`. A time zone belongs in
/// `--time-zone`, not in the schedule (the API server rejects `TZ=` there).
pub fn check_schedule(s: &str) -> Result<(), K8sError> {
    const MACROS: &[&str] = &[
        "@yearly",
        "@annually",
        "@monthly",
        "@weekly",
        "@daily",
        "@midnight",
        "@hourly",
    ];
    let fields: Vec<&str> = s.split_whitespace().collect();
    let ok = if s.starts_with('@') {
        MACROS.contains(&s)
    } else {
        fields.len() == 5
            && fields.iter().all(|f| {
                f.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '*' | '/' | ',' | '-' | '?'))
            })
    };
    if ok {
        Ok(())
    } else {
        Err(bad(
            "schedule",
            s,
            "five cron fields (minute hour day-of-month month day-of-week) or @hourly, \
             @daily, @weekly, @monthly, @yearly; the time zone goes into --time-zone",
        ))
    }
}

/// 32-bit FNV-1a: a stable, dependency-free hash for name suffixes (not for security).
fn fnv1a(s: &str) -> u32 {
    s.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// `prefix` + `base` (dots turned into dashes) as an object name of at most `max`
/// characters. Too long a name is cut and ends in a hash of the whole `base`, so two long
/// PVC names with a common start still give distinct names.
pub fn object_name(prefix: &str, base: &str, max: usize) -> String {
    let base = base.replace('.', "-");
    let full = format!("{prefix}{base}");
    if full.len() <= max {
        return full;
    }
    let suffix = format!("-{:08x}", fnv1a(&base));
    let keep = max.saturating_sub(suffix.len());
    let head: String = full.chars().take(keep).collect();
    format!("{}{suffix}", head.trim_end_matches('-'))
}

/// `s` as a label value: itself when valid, otherwise cut to fit and ending in a hash.
pub fn label_value(s: &str) -> String {
    if is_label_value(s) {
        return s.to_string();
    }
    let suffix = format!("-{:08x}", fnv1a(s));
    let head: String = s
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .take(63 - suffix.len())
        .collect();
    let head = head.trim_start_matches(|c: char| !c.is_ascii_alphanumeric());
    let head = head.trim_end_matches(|c: char| !c.is_ascii_alphanumeric());
    if head.is_empty() {
        format!("h{suffix}")
    } else {
        format!("{head}{suffix}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_names() {
        assert!(check_dns_label("ns", "jhub").is_ok());
        assert!(check_dns_label("ns", "Jhub").is_err());
        assert!(check_dns_label("ns", "-a").is_err());
        assert!(check_dns_label("ns", &"a".repeat(64)).is_err());
        assert!(check_dns_subdomain("pvc", "claim-alice-40example-2ecom").is_ok());
        assert!(check_dns_subdomain("pvc", "a.b-c").is_ok());
        assert!(check_dns_subdomain("pvc", "a..b").is_err());
        assert!(check_dns_subdomain("pvc", "claim_alice").is_err());
        assert!(check_dns_subdomain("pvc", "").is_err());
    }

    #[test]
    fn label_values() {
        assert!(check_label_value("user", "alice").is_ok());
        assert!(check_label_value("user", "Alice_B.c-d").is_ok());
        assert!(check_label_value("user", "").is_err());
        assert!(check_label_value("user", "a,b").is_err());
        assert!(check_label_value("user", "a-").is_err());
        assert_eq!(label_value("claim-alice"), "claim-alice");
        let long = format!("claim-{}", "x".repeat(80));
        let v = label_value(&long);
        assert!(v.len() <= 63 && is_label_value(&v), "{v}");
        assert_ne!(v, label_value(&format!("{long}y")));
    }

    #[test]
    fn quantities() {
        for ok in ["250m", "1", "0.5", "512Mi", "2Gi", "1G", "100k"] {
            assert!(check_quantity("cpu", ok).is_ok(), "{ok}");
        }
        for bad in ["", "lots", "-1", "0", "1.2.3", "5 Mi", "1mi", "Mi", "."] {
            assert!(check_quantity("cpu", bad).is_err(), "{bad}");
        }
        assert_eq!(quantity_value("250m"), Some(0.25));
        assert_eq!(quantity_value("1Gi"), Some(1073741824.0));
        assert!(quantity_value("1G").unwrap() < quantity_value("1Gi").unwrap());
    }

    #[test]
    fn time_zones_and_schedules() {
        assert!(check_time_zone("UTC").is_ok());
        assert!(check_time_zone("America/Argentina/Buenos_Aires").is_ok());
        assert!(check_time_zone("Etc/GMT+6").is_ok());
        assert!(check_time_zone("../etc/passwd").is_err());
        assert!(check_time_zone("America Chicago").is_err());
        assert!(check_schedule("0 5 * * 0").is_ok());
        assert!(check_schedule("*/15 1-3 * * MON-FRI").is_ok());
        assert!(check_schedule("@daily").is_ok());
        assert!(check_schedule("TZ=UTC 0 5 * * 0").is_err());
        assert!(check_schedule("0 5 * *").is_err());
        assert!(check_schedule("@sometimes").is_err());
    }

    #[test]
    fn object_names_fit_and_stay_distinct() {
        assert_eq!(
            object_name("restash-backup-", "claim-alice", 52),
            "restash-backup-claim-alice"
        );
        assert_eq!(object_name("r-", "a.b", 52), "r-a-b");
        let a = object_name("restash-backup-", &format!("claim-{}a", "x".repeat(60)), 52);
        let b = object_name("restash-backup-", &format!("claim-{}b", "x".repeat(60)), 52);
        assert_eq!(a.len(), 52);
        assert_ne!(a, b);
        assert!(check_dns_label("name", &a).is_ok());
    }

    #[test]
    fn secret_keys_and_env_names() {
        assert!(check_secret_key("RESTIC_PASSWORD").is_ok());
        assert!(check_secret_key("a.b-c").is_ok());
        assert!(check_secret_key("..data").is_err());
        assert!(check_secret_key("a/b").is_err());
        assert!(check_env_name("AWS_DEFAULT_REGION").is_ok());
        assert!(check_env_name("1X").is_err());
        assert!(check_env_name("A B").is_err());
    }
}
