//! The run's results: the JSON report, the one-line summary, the latency distribution as CSV.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io;
use std::path::Path;

use hdrhistogram::Histogram;
use serde_json::{json, Value};

/// What the client connections negotiated and received, summed over connections and the whole
/// run (setup included).
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Wire {
    /// Every byte read from the client sockets: upgrade answers, frame headers, payloads.
    pub bytes_received: u64,
    /// Payloads of data messages as the application reads them, after inflating.
    pub message_bytes: u64,
    /// Messages that arrived compressed (RSV1 set).
    pub compressed_messages: u64,
    /// The payloads of those messages as received.
    pub compressed_bytes: u64,
    /// The payloads of those messages after inflating.
    pub inflated_bytes: u64,
    /// Connections whose upgrade did not accept the permessage-deflate offered.
    pub deflate_declined: u64,
    /// Connections whose upgrade did not choose the `herald.msgpack` asked for: they spoke JSON.
    pub format_declined: u64,
    /// TLS handshakes completed, by the version agreed.
    pub tls13: u64,
    pub tls12: u64,
}

impl Wire {
    pub fn add(&mut self, other: &Wire) {
        self.bytes_received += other.bytes_received;
        self.message_bytes += other.message_bytes;
        self.compressed_messages += other.compressed_messages;
        self.compressed_bytes += other.compressed_bytes;
        self.inflated_bytes += other.inflated_bytes;
        self.deflate_declined += other.deflate_declined;
        self.format_declined += other.format_declined;
        self.tls13 += other.tls13;
        self.tls12 += other.tls12;
    }

    /// Counts a finished TLS handshake by the version agreed.
    pub fn tls_agreed(&mut self, version: Option<&str>) {
        match version {
            Some("1.3") => self.tls13 += 1,
            Some("1.2") => self.tls12 += 1,
            _ => {}
        }
    }

    /// Inflated over compressed size of the messages that came compressed.
    pub fn compression_ratio(&self) -> Option<f64> {
        (self.compressed_bytes > 0)
            .then(|| self.inflated_bytes as f64 / self.compressed_bytes as f64)
    }

    /// The byte counts; the declined counts sit beside `format` and `deflate` in the report.
    fn to_json(self) -> Value {
        json!({
            "bytes_received": self.bytes_received,
            "message_bytes": self.message_bytes,
            "compressed_messages": self.compressed_messages,
            "compressed_bytes": self.compressed_bytes,
            "inflated_bytes": self.inflated_bytes,
            "compression_ratio": self.compression_ratio().map(round3),
        })
    }
}

/// Everything measured in one run. Byte and nanosecond figures are `None` when not measured
/// (no `--server-pid`, or an `--idle-only` run for the push figures).
pub struct Report {
    pub label: String,
    pub protocol: &'static str,
    /// The raw protocol's encoding asked for; `wire.format_declined` says where it was not in
    /// effect.
    pub format: &'static str,
    /// permessage-deflate was offered; `wire.deflate_declined` says where it was not in effect.
    pub deflate: bool,
    /// Over TLS: the versions offered (`wire` counts the versions agreed).
    pub tls: Option<&'static str>,
    pub pattern: &'static str,
    pub rate: f64,
    /// Bytes of each notification's `message` text.
    pub message_size: usize,
    pub users: u32,
    pub connections_requested: u64,
    pub connections_ok: u64,
    pub connections_failed: u64,
    /// Why connections failed, with counts.
    pub connect_failures: BTreeMap<String, u64>,
    pub connect_seconds: f64,
    /// Subscribed connections the server closed during the run.
    pub disconnected: u64,
    pub pushes_planned: u64,
    pub pushes_sent: u64,
    /// Synchronous pushes the schedule ended before the callers could send.
    pub pushes_unsent: u64,
    pub push_statuses: BTreeMap<u16, u64>,
    /// Push call latency in µs: from each push's due time to its answer.
    pub push_calls: Histogram<u64>,
    /// From push 0's due time to the last answer read, in seconds.
    pub last_answer_seconds: Option<f64>,
    /// Pushes planned that got no HTTP answer (unsent or unanswered).
    pub push_errors: u64,
    pub push_error_messages: Vec<String>,
    /// How late the pusher sent its most delayed request, in µs.
    pub push_lag_max_us: u64,
    pub push_seconds: f64,
    pub deliveries_expected: u64,
    pub deliveries_received: u64,
    pub deliveries_duplicates: u64,
    pub deliveries_unchecked: u64,
    pub deliveries_unparsed: u64,
    pub latency: Histogram<u64>,
    /// One value per push that reached anyone: the latency in µs of its last delivery.
    pub last_delivery: Histogram<u64>,
    pub server_cpu_ns: Option<u64>,
    pub rss_baseline: Option<u64>,
    pub rss_idle: Option<u64>,
    pub rss_after: Option<u64>,
    pub wire: Wire,
}

impl Report {
    pub fn lost(&self) -> u64 {
        self.deliveries_expected
            .saturating_sub(self.deliveries_received)
    }

    pub fn deliveries_per_sec(&self) -> f64 {
        if self.push_seconds > 0.0 {
            self.deliveries_received as f64 / self.push_seconds
        } else {
            0.0
        }
    }

    /// Pushes answered 2xx.
    pub fn pushes_answered(&self) -> u64 {
        self.push_statuses
            .iter()
            .filter(|(s, _)| (200..300).contains(*s))
            .map(|(_, n)| n)
            .sum()
    }

    pub fn pushes_per_sec(&self) -> f64 {
        if self.push_seconds > 0.0 {
            self.pushes_answered() as f64 / self.push_seconds
        } else {
            0.0
        }
    }

    pub fn cpu_ns_per_push(&self) -> Option<f64> {
        let cpu = self.server_cpu_ns?;
        let answered = self.pushes_answered();
        (answered > 0).then(|| cpu as f64 / answered as f64)
    }

    pub fn cpu_ns_per_delivery(&self) -> Option<f64> {
        let cpu = self.server_cpu_ns?;
        (self.deliveries_received > 0).then(|| cpu as f64 / self.deliveries_received as f64)
    }

    pub fn rss_per_connection(&self) -> Option<f64> {
        let (base, idle) = (self.rss_baseline?, self.rss_idle?);
        (self.connections_ok > 0).then(|| (idle as f64 - base as f64) / self.connections_ok as f64)
    }

    /// Whether anything went wrong: the exit status is nonzero then.
    pub fn failed(&self) -> bool {
        self.lost() > 0
            || self.connections_failed > 0
            || self.disconnected > 0
            || self.push_errors > 0
            || self.push_statuses.keys().any(|s| !(200..300).contains(s))
    }

    pub fn to_json(&self) -> Value {
        let h = &self.latency;
        let q = |p: f64| h.value_at_quantile(p);
        let spread = |h: &Histogram<u64>| {
            json!({
                "p50": h.value_at_quantile(0.5),
                "p90": h.value_at_quantile(0.9),
                "p99": h.value_at_quantile(0.99),
                "max": h.max(),
                "mean": round3(h.mean()),
                "count": h.len(),
            })
        };
        let statuses: serde_json::Map<String, Value> = self
            .push_statuses
            .iter()
            .map(|(s, n)| (s.to_string(), json!(n)))
            .collect();
        json!({
            "label": self.label,
            "protocol": self.protocol,
            "format": self.format,
            "format_declined": self.wire.format_declined,
            "deflate": self.deflate,
            "deflate_declined": self.wire.deflate_declined,
            "tls": self.tls.map(|offered| json!({
                "offered": offered,
                "tls13": self.wire.tls13,
                "tls12": self.wire.tls12,
            })),
            "pattern": self.pattern,
            "rate": self.rate,
            "message_size": self.message_size,
            "users": self.users,
            "connections_requested": self.connections_requested,
            "connections_ok": self.connections_ok,
            "connections_failed": self.connections_failed,
            "connect_failures": self.connect_failures,
            "connect_seconds": round3(self.connect_seconds),
            "disconnected": self.disconnected,
            "pushes_planned": self.pushes_planned,
            "pushes_sent": self.pushes_sent,
            "pushes_unsent": self.pushes_unsent,
            "pushes_answered": self.pushes_answered(),
            "pushes_per_sec": round3(self.pushes_per_sec()),
            "last_answer_seconds": self.last_answer_seconds.map(round3),
            "push_call_us": spread(&self.push_calls),
            "push_statuses": statuses,
            "push_errors": self.push_errors,
            "push_error_messages": self.push_error_messages,
            "push_lag_max_us": self.push_lag_max_us,
            "push_seconds": round3(self.push_seconds),
            "deliveries_expected": self.deliveries_expected,
            "deliveries_received": self.deliveries_received,
            "deliveries_duplicates": self.deliveries_duplicates,
            "deliveries_lost": self.lost(),
            "deliveries_unchecked": self.deliveries_unchecked,
            "deliveries_unparsed": self.deliveries_unparsed,
            "deliveries_per_sec": round3(self.deliveries_per_sec()),
            "latency_us": {
                "p50": q(0.5),
                "p90": q(0.9),
                "p99": q(0.99),
                "p999": q(0.999),
                "max": h.max(),
                "mean": round3(h.mean()),
                "count": h.len(),
            },
            "last_delivery_us": spread(&self.last_delivery),
            "server_cpu_ns": self.server_cpu_ns,
            "cpu_ns_per_delivery": self.cpu_ns_per_delivery().map(round3),
            "cpu_ns_per_push": self.cpu_ns_per_push().map(round3),
            "rss_baseline": self.rss_baseline,
            "rss_idle": self.rss_idle,
            "rss_per_connection": self.rss_per_connection().map(round3),
            "rss_after": self.rss_after,
            "wire": self.wire.to_json(),
        })
    }

    /// One line for a human: what ran, how fast, how late, what was lost, what it cost.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "{} {} {}: {} conns",
            self.label, self.protocol, self.pattern, self.connections_ok
        );
        if self.connections_failed > 0 {
            let _ = write!(s, " ({} failed)", self.connections_failed);
        }
        if let Some(offered) = self.tls {
            let _ = match (self.wire.tls13, self.wire.tls12) {
                (n, 0) if n > 0 => write!(s, ", TLS 1.3"),
                (0, n) if n > 0 => write!(s, ", TLS 1.2"),
                (a, b) => write!(s, ", TLS ({offered} offered: {a} 1.3, {b} 1.2)"),
            };
        }
        if self.format != "json" {
            let _ = match self.wire.format_declined {
                0 => write!(s, ", {}", self.format),
                n => write!(s, ", {} (declined by {n} conns)", self.format),
            };
        }
        if self.deflate {
            let declined = self.wire.deflate_declined;
            let _ = match (self.wire.compression_ratio(), declined) {
                (Some(ratio), 0) => write!(s, ", deflate {ratio:.2}x"),
                (Some(ratio), n) => write!(s, ", deflate {ratio:.2}x (declined by {n} conns)"),
                (None, 0) => write!(s, ", deflate (nothing compressed)"),
                (None, n) => write!(s, ", deflate declined by {n} conns"),
            };
        }
        if self.pushes_planned > 0 {
            let h = &self.latency;
            let _ = write!(
                s,
                ", {} pushes, {} deliveries/s, p50 {} p99 {} p99.9 {} max {}, {} lost",
                self.pushes_sent,
                si(self.deliveries_per_sec()),
                micros(h.value_at_quantile(0.5)),
                micros(h.value_at_quantile(0.99)),
                micros(h.value_at_quantile(0.999)),
                micros(h.max()),
                self.lost()
            );
            if self.deliveries_duplicates > 0 {
                let _ = write!(s, ", {} duplicates", self.deliveries_duplicates);
            }
            let c = &self.push_calls;
            let _ = write!(
                s,
                ", {} answered, call p50 {} p99 {}",
                self.pushes_answered(),
                micros(c.value_at_quantile(0.5)),
                micros(c.value_at_quantile(0.99))
            );
            if self.pushes_unsent > 0 {
                let _ = write!(s, ", {} unsent", self.pushes_unsent);
            }
            if let Some(cpu) = self.cpu_ns_per_delivery() {
                let _ = write!(s, ", {cpu:.0} ns CPU/delivery");
            }
        }
        if let Some(per) = self.rss_per_connection() {
            let _ = write!(s, ", {:.1} KiB RSS/conn", per / 1024.0);
        }
        s
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// `12345678.0` as `12.3M`.
fn si(x: f64) -> String {
    match x {
        x if x >= 1e9 => format!("{:.1}G", x / 1e9),
        x if x >= 1e6 => format!("{:.1}M", x / 1e6),
        x if x >= 1e3 => format!("{:.1}k", x / 1e3),
        x => format!("{x:.0}"),
    }
}

/// Microseconds as `850us`, `1.2ms` or `3.40s`.
fn micros(us: u64) -> String {
    match us {
        us if us >= 1_000_000 => format!("{:.2}s", us as f64 / 1e6),
        us if us >= 1_000 => format!("{:.1}ms", us as f64 / 1e3),
        us => format!("{us}us"),
    }
}

/// Writes the latency distribution as `percentile,latency_us`, one row per quantile step
/// (finer towards the tail), for plotting.
pub fn write_latency_csv(path: &Path, h: &Histogram<u64>) -> io::Result<()> {
    let mut out = String::from("percentile,latency_us\n");
    if !h.is_empty() {
        for v in h.iter_quantiles(2) {
            let _ = writeln!(
                out,
                "{:.6},{}",
                v.quantile_iterated_to() * 100.0,
                h.highest_equivalent(v.value_iterated_to())
            );
        }
    }
    std::fs::write(path, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_units() {
        assert_eq!(si(40_000_000.0), "40.0M");
        assert_eq!(si(950.0), "950");
        assert_eq!(micros(1_200), "1.2ms");
        assert_eq!(micros(85), "85us");
    }
}
