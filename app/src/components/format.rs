//! Numbers, durations and times as people read them.

/// `1234567` → `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A rate with at most one decimal: `0.5`, `12`, `1,250`.
pub fn rate(x: f64) -> String {
    if x >= 100.0 || x.fract() == 0.0 {
        thousands(x.round() as u64)
    } else {
        format!("{x:.1}")
    }
}

/// Short axis labels: `950`, `1.2k`, `3.4M`.
pub fn compact(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.1}M", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.1}k", x / 1e3)
    } else if x.fract() == 0.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    }
}

/// Bytes in binary units: `512 B`, `1.5 KiB`, `16.0 MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// `3d 4h`, `2h 5m`, `4m 10s`, `12s`.
pub fn uptime(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3_600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else if m > 0 {
        format!("{m}m {s}s")
    } else {
        format!("{s}s")
    }
}

/// `2026-11-26T21:00:00.123Z` → `2026-11-26 21:00:00` (UTC, as sent).
pub fn timestamp(ts: &str) -> String {
    let trimmed = ts.trim_end_matches('Z');
    let no_ms = trimmed.split('.').next().unwrap_or(trimmed);
    no_ms.replacen('T', " ", 1)
}

/// `2026-11-26T21:00:00.123Z` → `21:00:00.123`.
pub fn clock(ts: &str) -> String {
    ts.split('T')
        .nth(1)
        .unwrap_or(ts)
        .trim_end_matches('Z')
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(thousands(100), "100");
        assert_eq!(rate(0.5), "0.5");
        assert_eq!(rate(1250.4), "1,250");
        assert_eq!(compact(1500.0), "1.5k");
        assert_eq!(compact(2.0), "2");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(16 << 20), "16.0 MiB");
        assert_eq!(uptime(59), "59s");
        assert_eq!(uptime(3_725), "1h 2m");
        assert_eq!(uptime(90_000), "1d 1h");
        assert_eq!(timestamp("2026-11-26T21:00:00.123Z"), "2026-11-26 21:00:00");
        assert_eq!(clock("2026-11-26T21:00:00.123Z"), "21:00:00.123");
    }
}
