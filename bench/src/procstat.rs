//! CPU time and resident memory of a process, from /proc.

use std::time::Duration;

/// Clock ticks per second of /proc/PID/stat (USER_HZ; 100 on Linux).
const TICKS: f64 = 100.0;

#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    pub cpu: Duration,
    pub rss_bytes: u64,
}

/// `None` when the process is gone or /proc is unreadable.
pub fn sample(pid: u32) -> Option<Sample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(Sample {
        cpu: Duration::from_secs_f64((utime + stime) / TICKS),
        rss_bytes: rss_kb * 1024,
    })
}

/// CPU use between two samples, as a share of one core (1.0 = 100 %).
pub fn cpu_share(before: Sample, after: Sample, wall: Duration) -> f64 {
    if wall.is_zero() {
        return 0.0;
    }
    after.cpu.saturating_sub(before.cpu).as_secs_f64() / wall.as_secs_f64()
}
