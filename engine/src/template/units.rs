//! Docker's human units (go-units): "5 minutes", "4.3MB", as `ps`, `images` and
//! `system df` write them.

use std::time::Duration;

/// "5 seconds", "3 minutes", "2 hours", as docker ps writes durations.
pub fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => "Less than a second".into(),
        1 => "1 second".into(),
        2..=59 => format!("{s} seconds"),
        60..=119 => "About a minute".into(),
        120..=3599 => format!("{} minutes", s / 60),
        3600..=7199 => "About an hour".into(),
        7200..=172_799 => format!("{} hours", s / 3600),
        _ => format!("{} days", s / 86400),
    }
}

/// Time since an RFC 3339 timestamp (zero for a bad or future one).
pub fn since(ts: &str) -> Duration {
    chrono::DateTime::parse_from_rfc3339(ts)
        .ok()
        .and_then(|t| {
            (chrono::Utc::now() - t.with_timezone(&chrono::Utc))
                .to_std()
                .ok()
        })
        .unwrap_or_default()
}

/// Decimal units with three significant digits, as Docker's `ps` and `images`
/// (go-units `HumanSizeWithPrecision(size, 3)`): "999B", "4.3MB", "1.99MB".
pub fn human_size(bytes: u64) -> String {
    human_size_digits(bytes, 3)
}

/// Decimal units with `digits` significant digits (go-units `HumanSizeWithPrecision`).
pub fn human_size_digits(bytes: u64, digits: i32) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1000.0 && i < UNITS.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        return format!("{bytes}B");
    }
    // %.Ng: as many decimals as the digits left after the integer part
    let int_digits = if v >= 1.0 {
        v.log10().floor() as i32 + 1
    } else {
        1
    };
    let mut decimals = (digits - int_digits).max(0) as usize;
    if format!("{v:.decimals$}")
        .replace('.', "")
        .trim_start_matches('0')
        .len()
        > digits as usize
    {
        decimals = decimals.saturating_sub(1);
    }
    let text = format!("{v:.decimals$}");
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.')
    } else {
        &text
    };
    format!("{text}{}", UNITS[i])
}

/// An RFC 3339 time as Go's `time.Time.String()` writes it: "2026-11-29 03:05:49 +0000 UTC".
pub fn go_time(ts: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(ts)
        .map(|t| {
            t.with_timezone(&chrono::Utc)
                .format("%Y-%m-%d %H:%M:%S +0000 UTC")
                .to_string()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes() {
        assert_eq!(human_duration(Duration::from_secs(5)), "5 seconds");
        assert_eq!(human_duration(Duration::from_secs(300)), "5 minutes");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(4_300_000), "4.3MB");
        assert_eq!(human_size(1_986_000), "1.99MB");
        assert_eq!(human_size(4_261_550), "4.26MB");
        assert_eq!(human_size(123_456_789), "123MB");
        assert_eq!(human_size(12_345_678), "12.3MB");
        assert_eq!(human_size(9_996_000), "10MB");
        assert_eq!(human_size_digits(1_986_000, 4), "1.986MB");
        assert_eq!(
            go_time("2026-11-29T03:05:49.123Z"),
            "2026-11-29 03:05:49 +0000 UTC"
        );
    }
}
