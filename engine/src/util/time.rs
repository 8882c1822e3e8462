//! Time stamps as records, image configs and history write them, and the
//! durations users write (Go's form, as HEALTHCHECK and timeouts take them).

use std::time::Duration;

/// Now, in RFC 3339 with nanoseconds, UTC.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// Go durations as HEALTHCHECK takes them (`30s`, `1m30s`, `500ms`), in nanoseconds.
pub fn parse_duration(s: &str) -> std::result::Result<u64, String> {
    let bad = || format!("{s:?} is not a duration: use e.g. 30s, 1m or 500ms");
    let mut total = 0f64;
    let mut num = String::new();
    let mut chars = s.chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let mut unit = c.to_string();
        while let Some(&n) = chars.peek() {
            if n.is_ascii_alphabetic() {
                unit.push(n);
                chars.next();
            } else {
                break;
            }
        }
        let v: f64 = num.parse().map_err(|_| bad())?;
        num.clear();
        let scale = match unit.as_str() {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(bad()),
        };
        total += v * scale;
        any = true;
    }
    if !num.is_empty() || !any {
        return Err(bad());
    }
    Ok(total as u64)
}

/// A timeout as users give it: whole seconds (`30`) or a Go duration (`90s`,
/// `5m`, `500ms`); zero is refused (a timeout that fires at once is a typo).
pub fn parse_timeout(s: &str) -> std::result::Result<Duration, String> {
    let s = s.trim();
    let nanos = match s.parse::<u64>() {
        Ok(secs) => secs.saturating_mul(1_000_000_000),
        Err(_) => parse_duration(s).map_err(|_| {
            format!("{s:?} is not a timeout: give seconds (30) or a duration (90s, 5m, 500ms)")
        })?,
    };
    if nanos == 0 {
        return Err(format!("{s:?} is not a timeout: give more than zero"));
    }
    Ok(Duration::from_nanos(nanos))
}

/// The timeout an environment variable sets (`TWINBOX_CNI_TIMEOUT`,
/// `TWINBOX_BOOT_TIMEOUT`...): unset, empty or unreadable is `None` (an
/// unreadable one is logged), so the caller's default holds.
pub fn env_timeout(var: &str) -> Option<Duration> {
    let value = std::env::var(var).ok().filter(|v| !v.trim().is_empty())?;
    match parse_timeout(&value) {
        Ok(d) => Some(d),
        Err(e) => {
            tracing::warn!("{var}: {e}; the default applies");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_are_seconds_or_go_durations_above_zero() {
        assert_eq!(parse_timeout("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_timeout(" 5m "), Ok(Duration::from_secs(300)));
        assert_eq!(parse_timeout("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_timeout("1m30s"), Ok(Duration::from_secs(90)));
        for bad in ["0", "0s", "", "-1", "ten", "5x"] {
            assert!(parse_timeout(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn env_timeouts_fall_back_to_none() {
        // a name no other test sets (tests share one environment)
        let var = "TWINBOX_TEST_ENV_TIMEOUT_UTIL";
        assert_eq!(env_timeout(var), None);
        std::env::set_var(var, "2");
        assert_eq!(env_timeout(var), Some(Duration::from_secs(2)));
        std::env::set_var(var, "soon");
        assert_eq!(env_timeout(var), None);
        std::env::remove_var(var);
    }
}
