//! CPU time spent by the server under test and by the load generator itself, per phase.
//!
//! On a small machine the two share the cores, so a rate alone mixes the server's cost with
//! the load generator's. CPU seconds per operation separate them: they do not depend on
//! how the scheduler split the cores, only on the work each process did.

use std::time::Duration;

/// Cumulative CPU time (user + system) at one instant.
#[derive(Clone, Copy, Debug)]
pub struct CpuSample {
    server: Option<Duration>,
    own: Duration,
}

/// CPU time spent between two samples.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuUse {
    /// `None` when the server's pid is unknown or its counters could not be read.
    pub server_secs: Option<f64>,
    /// `None` when the phase was not measured.
    pub own_secs: Option<f64>,
}

impl CpuSample {
    pub fn now(server_pid: Option<u32>) -> CpuSample {
        CpuSample {
            server: server_pid.and_then(process_cpu),
            own: own_cpu(),
        }
    }

    /// What was spent since this sample, sampling the same server again.
    pub fn elapsed(&self, server_pid: Option<u32>) -> CpuUse {
        let later = CpuSample::now(server_pid);
        CpuUse {
            server_secs: match (self.server, later.server) {
                (Some(before), Some(after)) => Some(after.saturating_sub(before).as_secs_f64()),
                _ => None,
            },
            own_secs: Some(later.own.saturating_sub(self.own).as_secs_f64()),
        }
    }
}

impl CpuUse {
    /// Server CPU milliseconds per operation.
    pub fn server_ms_per(&self, operations: usize) -> Option<f64> {
        let secs = self.server_secs?;
        (operations > 0).then(|| secs * 1000.0 / operations as f64)
    }

    pub fn own_ms_per(&self, operations: usize) -> Option<f64> {
        let secs = self.own_secs?;
        (operations > 0).then(|| secs * 1000.0 / operations as f64)
    }

    /// "CPU per login: server 0.550 ms, loadgen 0.310 ms"; `None` when the phase was not
    /// measured.
    pub fn describe(&self, operations: usize, what: &str) -> Option<String> {
        let own = self.own_ms_per(operations)?;
        let server = self
            .server_ms_per(operations)
            .map_or_else(|| "unknown (no --pid)".to_owned(), |ms| format!("{ms:.3} ms"));
        Some(format!("CPU per {what}: server {server}, loadgen {own:.3} ms"))
    }
}

/// utime + stime of every thread of `pid`, from `/proc/PID/stat`.
fn process_cpu(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let ticks = parse_stat_ticks(&stat)?;
    Some(ticks_to_duration(ticks, clock_ticks_per_sec()))
}

/// Fields 14 and 15 of `/proc/PID/stat`, counted after the command name, which is in
/// parentheses and may itself contain spaces and parentheses.
fn parse_stat_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace();
    // After the name: state (3), ppid (4), ... utime is field 14, so the 12th from here.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

fn ticks_to_duration(ticks: u64, per_sec: u64) -> Duration {
    let per_sec = per_sec.max(1);
    Duration::from_secs(ticks / per_sec) + Duration::from_nanos((ticks % per_sec) * 1_000_000_000 / per_sec)
}

fn clock_ticks_per_sec() -> u64 {
    // SAFETY: sysconf only reads a system constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).ok().filter(|&t| t > 0).unwrap_or(100)
}

fn own_cpu() -> Duration {
    // SAFETY: getrusage writes only into the struct it is given, which is fully initialised.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return Duration::ZERO;
    }
    timeval(usage.ru_utime) + timeval(usage.ru_stime)
}

fn timeval(value: libc::timeval) -> Duration {
    let secs = u64::try_from(value.tv_sec).unwrap_or(0);
    let micros = u64::try_from(value.tv_usec).unwrap_or(0);
    Duration::from_secs(secs) + Duration::from_micros(micros)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_after_a_name_with_spaces_and_parentheses() {
        let stat = "4242 (my (odd) server) S 1 4242 4242 0 -1 4194560 900 0 0 0 1234 567 0 0 20 0 9 0 100 0 0";
        assert_eq!(parse_stat_ticks(stat), Some(1234 + 567));
        assert_eq!(parse_stat_ticks("4242 (truncated) S 1 2"), None);
        assert_eq!(parse_stat_ticks("no parenthesis"), None);
    }

    #[test]
    fn ticks_convert_at_the_system_rate() {
        assert_eq!(ticks_to_duration(250, 100), Duration::from_millis(2500));
        assert_eq!(ticks_to_duration(3, 1000), Duration::from_millis(3));
    }

    #[test]
    fn our_own_cpu_time_is_read_and_grows() {
        let before = CpuSample::now(Some(std::process::id()));
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let spent = before.elapsed(Some(std::process::id()));
        assert!(spent.own_secs.is_some_and(|s| s > 0.0), "getrusage saw no CPU time");
        assert!(spent.server_secs.is_some(), "/proc/self/stat could not be read");
        assert_eq!(CpuUse::default().server_ms_per(10), None);
        let use_ = CpuUse {
            server_secs: Some(0.5),
            own_secs: Some(0.25),
        };
        assert_eq!(use_.server_ms_per(1000), Some(0.5));
        assert_eq!(use_.own_ms_per(0), None);
        assert_eq!(
            CpuUse::default().own_ms_per(10),
            None,
            "an unmeasured phase reports nothing"
        );
    }
}
