//! `process_*` metrics read from /proc at scrape time, under the names every
//! Prometheus exporter uses (so existing dashboards work).
//!
//! The parsers are pure functions over the files' text and never panic; a
//! value that cannot be read is left out of the scrape rather than failing
//! it.

use std::fs;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeGaugeValue, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Clock ticks per second in /proc/<pid>/stat. proc(5) says to divide by
/// `sysconf(_SC_CLK_TCK)`; that is the kernel's `USER_HZ`, which is 100 on
/// every architecture we build for (it is a user-space ABI constant, not the
/// kernel's `HZ`).
const USER_HZ: f64 = 100.0;

/// Reads /proc/self on every scrape.
#[derive(Debug)]
pub struct ProcessCollector;

/// What one scrape read; `None` where a file or field was missing.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct ProcessSample {
    pub cpu_seconds: Option<f64>,
    pub resident_bytes: Option<u64>,
    pub virtual_bytes: Option<u64>,
    pub threads: Option<u64>,
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
    pub start_time_seconds: Option<f64>,
}

impl ProcessSample {
    fn read() -> ProcessSample {
        let stat = fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|text| parse_stat(&text));
        let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
        let boot_time = fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|text| parse_boot_time(&text));
        let open_fds = fs::read_dir("/proc/self/fd")
            .ok()
            .map(|entries| entries.count() as u64);
        let max_fds = fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|text| parse_max_open_files(&text));
        ProcessSample {
            cpu_seconds: stat.as_ref().map(|s| s.cpu_seconds()),
            resident_bytes: status_kib(&status, "VmRSS").map(|kib| kib * 1024),
            virtual_bytes: stat.as_ref().map(|s| s.virtual_bytes),
            threads: stat.as_ref().map(|s| s.threads),
            open_fds,
            max_fds,
            start_time_seconds: stat
                .as_ref()
                .zip(boot_time)
                .map(|(s, boot)| boot as f64 + s.start_ticks as f64 / USER_HZ),
        }
    }
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let sample = ProcessSample::read();
        if let Some(value) = sample.cpu_seconds {
            let metric = ConstCounter::new(value);
            let help = "Total user and system CPU time spent in seconds.";
            let metric_type = metric.metric_type();
            metric.encode(encoder.encode_descriptor(
                "process_cpu_seconds",
                help,
                None,
                metric_type,
            )?)?;
        }
        let e = &mut encoder;
        gauge(
            e,
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            sample.resident_bytes,
        )?;
        gauge(
            e,
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
            sample.virtual_bytes,
        )?;
        gauge(
            e,
            "process_open_fds",
            "Number of open file descriptors.",
            sample.open_fds,
        )?;
        gauge(
            e,
            "process_max_fds",
            "Maximum number of open file descriptors (soft limit).",
            sample.max_fds,
        )?;
        gauge(
            e,
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            sample.start_time_seconds,
        )?;
        gauge(
            e,
            "process_threads",
            "Number of OS threads in the process.",
            sample.threads,
        )?;
        Ok(())
    }
}

/// Encodes one gauge, or nothing when the value could not be read.
fn gauge<N: EncodeGaugeValue>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: Option<N>,
) -> Result<(), std::fmt::Error> {
    let Some(value) = value else {
        return Ok(());
    };
    let metric = ConstGauge::new(value);
    let metric_type = metric.metric_type();
    metric.encode(encoder.encode_descriptor(name, help, None, metric_type)?)
}

/// The fields of /proc/self/stat we use.
#[derive(Debug, PartialEq)]
pub(crate) struct Stat {
    pub user_ticks: u64,
    pub system_ticks: u64,
    pub threads: u64,
    pub start_ticks: u64,
    pub virtual_bytes: u64,
}

impl Stat {
    fn cpu_seconds(&self) -> f64 {
        (self.user_ticks + self.system_ticks) as f64 / USER_HZ
    }
}

/// Parses /proc/<pid>/stat. Field 2, the command name, is in parentheses and
/// may itself hold spaces and parentheses, so fields are counted from the
/// last `)`. Fields (1-based, proc(5)): 14 utime, 15 stime, 20 num_threads,
/// 22 starttime, 23 vsize.
pub(crate) fn parse_stat(text: &str) -> Option<Stat> {
    let after_name = &text[text.rfind(')')? + 1..];
    // after_name starts at field 3 (state).
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let field = |n: usize| -> Option<u64> { fields.get(n - 3)?.parse().ok() };
    Some(Stat {
        user_ticks: field(14)?,
        system_ticks: field(15)?,
        threads: field(20)?,
        start_ticks: field(22)?,
        virtual_bytes: field(23)?,
    })
}

/// The `btime` line of /proc/stat: boot time in seconds since the epoch.
pub(crate) fn parse_boot_time(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix("btime "))
        .and_then(|value| value.trim().parse().ok())
}

/// The soft limit on the "Max open files" line of /proc/<pid>/limits;
/// `None` when unlimited.
pub(crate) fn parse_max_open_files(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// A `Key:   1234 kB` line of /proc/<pid>/status, in KiB.
pub(crate) fn status_kib(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix(':'))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "4242 (herald (x) y) S 1 4242 4242 0 -1 4194560 1234 0 0 0 \
        250 75 0 0 20 0 7 0 123456 987654321 2048 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 \
        17 1 0 0 0 0 0";

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        assert_eq!(
            parse_stat(STAT),
            Some(Stat {
                user_ticks: 250,
                system_ticks: 75,
                threads: 7,
                start_ticks: 123456,
                virtual_bytes: 987654321,
            })
        );
        assert_eq!(parse_stat(STAT).unwrap().cpu_seconds(), 3.25);
    }

    #[test]
    fn truncated_or_garbled_proc_files_give_none_not_a_panic() {
        for cut in 0..STAT.len() {
            if STAT.is_char_boundary(cut) {
                let _ = parse_stat(&STAT[..cut]);
            }
        }
        assert_eq!(parse_stat("no parenthesis at all"), None);
        assert_eq!(parse_stat("1 (x) S"), None);
        assert_eq!(parse_boot_time("cpu 1 2 3\n"), None);
        assert_eq!(
            parse_max_open_files("Max open files  unlimited unlimited files"),
            None
        );
        assert_eq!(status_kib("VmRSS:\n", "VmRSS"), None);
    }

    #[test]
    fn boot_time_limits_and_status_lines_are_read() {
        assert_eq!(
            parse_boot_time("cpu  1 2 3\nbtime 1763700000\nprocesses 9\n"),
            Some(1_763_700_000)
        );
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max processes             63382                63382                processes\n\
                      Max open files            1024                 524288               files\n";
        assert_eq!(parse_max_open_files(limits), Some(1024));
        let status = "Name:\therald\nVmRSS:\t   10240 kB\nThreads:\t7\n";
        assert_eq!(status_kib(status, "VmRSS"), Some(10240));
        assert_eq!(status_kib(status, "VmSize"), None);
    }

    #[test]
    fn this_process_can_be_sampled() {
        let sample = ProcessSample::read();
        assert!(sample.resident_bytes.unwrap() > 0);
        assert!(sample.virtual_bytes.unwrap() >= sample.resident_bytes.unwrap());
        assert!(sample.threads.unwrap() >= 1);
        assert!(sample.open_fds.unwrap() >= 1);
        assert!(sample.max_fds.unwrap() >= sample.open_fds.unwrap());
        assert!(sample.start_time_seconds.unwrap() > 1_000_000_000.0);
    }
}
