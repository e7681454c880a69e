//! A soak's samples written out: one CSV row a second, an SVG chart of memory, descriptors,
//! connections and deliveries over time, and the figures a summary quotes per server.
//!
//! The SVG is written by hand: self-contained (no script, no font or style sheet from elsewhere),
//! readable in a browser or embedded in a page. A value missing from a sample (a server
//! restarting) leaves a gap in its line rather than a drop to zero. Nothing here reads a
//! process or a socket.

use std::fmt::Write as _;
use std::io;
use std::path::Path;

use crate::soak::record::{Sample, ServerSample};

/// The columns every row has before the servers'.
const CSV_HEAD: [&str; 5] = [
    "t",
    "clients_connected",
    "deliveries_per_s",
    "pushes_accepted_per_s",
    "pushes_failed_per_s",
];

/// One CSV row per sample, under a header row: the client side, then per server `k` its pid,
/// RSS in MiB, descriptors, CPU (cores), connections and subscriptions. A value not known in a
/// sample is an empty cell; counts in an interval are written per second.
pub fn write_csv(path: &Path, samples: &[Sample]) -> io::Result<()> {
    std::fs::write(path, csv(samples))
}

fn csv(samples: &[Sample]) -> String {
    let servers = server_count(samples);
    let mut out = CSV_HEAD.join(",");
    for k in 0..servers {
        for col in [
            "pid",
            "rss_mib",
            "fds",
            "cpu",
            "connections",
            "subscriptions",
        ] {
            let _ = write!(out, ",s{k}_{col}");
        }
    }
    out.push('\n');
    let cell = |v: Option<String>| v.unwrap_or_default();
    let per_s = |i: usize, count: fn(&Sample) -> u64| {
        cell(per_second(samples, i, count).map(|v| format!("{v:.1}")))
    };
    for (i, s) in samples.iter().enumerate() {
        let _ = write!(
            out,
            "{:.3},{},{},{},{}",
            s.t,
            s.clients_connected,
            per_s(i, |s| s.deliveries),
            per_s(i, |s| s.pushes_accepted),
            per_s(i, |s| s.pushes_failed),
        );
        for k in 0..servers {
            let srv = s.servers.get(k).cloned().unwrap_or_default();
            let _ = write!(
                out,
                ",{},{},{},{},{},{}",
                cell(srv.pid.map(|v| v.to_string())),
                cell(srv.rss_bytes.map(|v| format!("{:.1}", mib(v)))),
                cell(srv.fds.map(|v| v.to_string())),
                cell(srv.cpu.map(|v| format!("{v:.3}"))),
                cell(srv.connections.map(|v| v.to_string())),
                cell(srv.subscriptions.map(|v| v.to_string())),
            );
        }
        out.push('\n');
    }
    out
}

/// The most servers any sample has.
fn server_count(samples: &[Sample]) -> usize {
    samples.iter().map(|s| s.servers.len()).max().unwrap_or(0)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Sample `i`'s count over the time since the sample before it (since 0 for the first).
fn per_second(samples: &[Sample], i: usize, count: fn(&Sample) -> u64) -> Option<f64> {
    let before = if i == 0 { 0.0 } else { samples[i - 1].t };
    let dt = samples[i].t - before;
    (dt > 0.0).then(|| count(&samples[i]) as f64 / dt)
}

/// Server `k`'s `herald_deliveries_total` per second between sample `i - 1` and `i`: none when
/// either is unknown or the counter went back (a restart).
fn server_deliveries_per_second(samples: &[Sample], i: usize, k: usize) -> Option<f64> {
    let total = |s: &Sample| s.servers.get(k).and_then(|s| s.deliveries_total);
    let prev = samples.get(i.checked_sub(1)?)?;
    let (a, b) = (total(prev)?, total(&samples[i])?);
    let dt = samples[i].t - prev.t;
    (b >= a && dt > 0.0).then(|| (b - a) as f64 / dt)
}

/// Figures of one server over a run (bytes and descriptors).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerFigures {
    pub rss_start: Option<u64>,
    pub rss_peak: Option<u64>,
    pub rss_end: Option<u64>,
    pub fds_start: Option<u64>,
    pub fds_peak: Option<u64>,
    pub fds_end: Option<u64>,
}

/// Per server, from the samples at or after `from_t`: the first value, the largest and the
/// last (each over the samples that have one).
pub fn server_figures(samples: &[Sample], from_t: f64) -> Vec<ServerFigures> {
    let after: Vec<&Sample> = samples.iter().filter(|s| s.t >= from_t).collect();
    let figures = |k: usize, field: fn(&ServerSample) -> Option<u64>| {
        let values: Vec<u64> = after
            .iter()
            .filter_map(|s| s.servers.get(k).and_then(field))
            .collect();
        (
            values.first().copied(),
            values.iter().max().copied(),
            values.last().copied(),
        )
    };
    (0..server_count(samples))
        .map(|k| {
            let (rss_start, rss_peak, rss_end) = figures(k, |s| s.rss_bytes);
            let (fds_start, fds_peak, fds_end) = figures(k, |s| s.fds);
            ServerFigures {
                rss_start,
                rss_peak,
                rss_end,
                fds_start,
                fds_peak,
                fds_end,
            }
        })
        .collect()
}

const WIDTH: f64 = 900.0;
/// The plots' left edge (room for the value labels) and right edge (room for the legends).
const PLOT_LEFT: f64 = 64.0;
const PLOT_RIGHT: f64 = 740.0;
const LEGEND_LEFT: f64 = 754.0;
/// Where the first panel begins, below the chart's title.
const TOP: f64 = 44.0;
/// One panel: its title line, then its plot.
const PANEL_TITLE: f64 = 22.0;
const PLOT_HEIGHT: f64 = 160.0;
const PANEL_GAP: f64 = 26.0;
/// Below the last plot: the time labels and the axis name.
const BOTTOM: f64 = 44.0;
const COLORS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

/// The client side's colour; server `k` has `COLORS[k % COLORS.len()]` in every panel.
const CLIENTS_COLOR: &str = "#333333";

/// One line of a panel: a value per sample, `None` where it is not known.
struct Series {
    name: String,
    color: &'static str,
    values: Vec<Option<f64>>,
}

struct Panel {
    title: &'static str,
    series: Vec<Series>,
}

/// Draws four panels over a shared time axis (RSS per server, open descriptors per server,
/// connections on the client side and per server, deliveries per second received and handed
/// out per server), with dashed vertical lines at `marks` (seconds, label).
pub fn write_svg(
    path: &Path,
    samples: &[Sample],
    title: &str,
    marks: &[(f64, String)],
) -> io::Result<()> {
    std::fs::write(path, svg(samples, title, marks))
}

fn panels(samples: &[Sample]) -> Vec<Panel> {
    let servers = server_count(samples);
    let per_server = |field: fn(&ServerSample) -> Option<f64>| -> Vec<Series> {
        (0..servers)
            .map(|k| Series {
                name: format!("s{k}"),
                color: COLORS[k % COLORS.len()],
                values: samples
                    .iter()
                    .map(|s| s.servers.get(k).and_then(field))
                    .collect(),
            })
            .collect()
    };
    let mut connections = vec![Series {
        name: "clients".into(),
        color: CLIENTS_COLOR,
        values: samples
            .iter()
            .map(|s| Some(s.clients_connected as f64))
            .collect(),
    }];
    connections.extend(per_server(|s| s.connections.map(|v| v as f64)));
    let mut deliveries = vec![Series {
        name: "clients".into(),
        color: CLIENTS_COLOR,
        values: (0..samples.len())
            .map(|i| per_second(samples, i, |s| s.deliveries))
            .collect(),
    }];
    deliveries.extend((0..servers).map(|k| {
        Series {
            name: format!("s{k}"),
            color: COLORS[k % COLORS.len()],
            values: (0..samples.len())
                .map(|i| server_deliveries_per_second(samples, i, k))
                .collect(),
        }
    }));
    vec![
        Panel {
            title: "Resident memory (MiB)",
            series: per_server(|s| s.rss_bytes.map(mib)),
        },
        Panel {
            title: "Open file descriptors",
            series: per_server(|s| s.fds.map(|v| v as f64)),
        },
        Panel {
            title: "Connections (clients subscribed; herald_connections per server)",
            series: connections,
        },
        Panel {
            title: "Deliveries per second (clients received; herald_deliveries_total per server)",
            series: deliveries,
        },
    ]
}

fn svg(samples: &[Sample], title: &str, marks: &[(f64, String)]) -> String {
    let panels = panels(samples);
    let panel_height = PANEL_TITLE + PLOT_HEIGHT + PANEL_GAP;
    let height = TOP + panel_height * panels.len() as f64 - PANEL_GAP + BOTTOM;
    let t_max = samples
        .iter()
        .map(|s| s.t)
        .chain(marks.iter().map(|m| m.0))
        .fold(0.0, f64::max)
        .max(1.0);
    let time = TimeAxis::new(t_max);
    let x = |t: f64| PLOT_LEFT + (t / t_max).clamp(0.0, 1.0) * (PLOT_RIGHT - PLOT_LEFT);
    let mut out = String::with_capacity(64 * 1024);
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = write!(
        out,
        r#"<rect x="0" y="0" width="{WIDTH}" height="{height}" fill="white"/><text x="{PLOT_LEFT}" y="24" font-size="15" font-weight="bold">{}</text>"#,
        escape(title)
    );
    let mut last_plot_bottom = TOP + PANEL_TITLE;
    for (p, panel) in panels.iter().enumerate() {
        let top = TOP + panel_height * p as f64;
        let plot_top = top + PANEL_TITLE;
        let plot_bottom = plot_top + PLOT_HEIGHT;
        last_plot_bottom = plot_bottom;
        let _ = write!(
            out,
            r#"<g><text x="{PLOT_LEFT}" y="{:.1}" font-weight="bold">{}</text>"#,
            top + 14.0,
            escape(panel.title)
        );
        // The value axis: from 0 to a round number above the largest value.
        let max = panel
            .series
            .iter()
            .flat_map(|s| s.values.iter().flatten())
            .fold(0.0, |a: f64, &b| a.max(b));
        // Nothing above 0 (no values, or all 0): an axis up to 1 still shows the zeros.
        let max = if max > 0.0 { max } else { 1.0 };
        let step = nice_step(max / 4.0);
        // A step of headroom when the largest value would touch the frame.
        let mut y_top = ((max / step).ceil() * step).max(step);
        if y_top - max < step * 0.05 {
            y_top += step;
        }
        let y = |v: f64| plot_bottom - (v / y_top).clamp(0.0, 1.0) * PLOT_HEIGHT;
        let ticks = (y_top / step).round() as u32;
        for i in 0..=ticks {
            let v = step * f64::from(i);
            let _ = write!(
                out,
                r##"<line x1="{PLOT_LEFT}" y1="{0:.1}" x2="{PLOT_RIGHT}" y2="{0:.1}" stroke="#e4e4e4"/><text x="{1:.1}" y="{2:.1}" text-anchor="end">{3}</text>"##,
                y(v),
                PLOT_LEFT - 6.0,
                y(v) + 4.0,
                escape(&value_label(v, step, y_top)),
            );
        }
        for i in 0..=time.ticks {
            let tx = x(time.step_s * f64::from(i));
            let _ = write!(
                out,
                r##"<line x1="{tx:.1}" y1="{plot_top:.1}" x2="{tx:.1}" y2="{plot_bottom:.1}" stroke="#f0f0f0"/>"##
            );
        }
        let _ = write!(
            out,
            r##"<rect x="{PLOT_LEFT}" y="{plot_top:.1}" width="{:.1}" height="{PLOT_HEIGHT}" fill="none" stroke="#999"/>"##,
            PLOT_RIGHT - PLOT_LEFT
        );
        for (k, series) in panel.series.iter().enumerate() {
            let color = series.color;
            draw_series(&mut out, samples, &series.values, color, &x, &y);
            let ly = plot_top + 8.0 + 16.0 * k as f64;
            let _ = write!(
                out,
                r#"<line x1="{LEGEND_LEFT}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{color}" stroke-width="2"/><text x="{:.1}" y="{:.1}">{}</text>"#,
                LEGEND_LEFT + 18.0,
                LEGEND_LEFT + 24.0,
                ly + 4.0,
                escape(&series.name)
            );
        }
        // The marks: a dashed line across each plot, named in the first.
        for (i, (t, label)) in marks.iter().enumerate() {
            let mx = x(*t);
            let _ = write!(
                out,
                r##"<line x1="{mx:.1}" y1="{plot_top:.1}" x2="{mx:.1}" y2="{plot_bottom:.1}" stroke="#555" stroke-dasharray="5 4"/>"##
            );
            if p == 0 {
                let _ = write!(
                    out,
                    r##"<text x="{:.1}" y="{:.1}" font-size="10" fill="#333" stroke="white" stroke-width="3" paint-order="stroke">{}</text>"##,
                    mx + 3.0,
                    plot_top + 11.0 + 12.0 * (i % 4) as f64,
                    escape(label)
                );
            }
        }
        out.push_str("</g>");
    }
    // The time axis, under the last panel.
    for i in 0..=time.ticks {
        let s = time.step_s * f64::from(i);
        let _ = write!(
            out,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            x(s),
            last_plot_bottom + 16.0,
            escape(&value_label(
                s / time.unit_s,
                time.step_s / time.unit_s,
                f64::INFINITY
            ))
        );
    }
    let _ = write!(
        out,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">time ({})</text>"#,
        (PLOT_LEFT + PLOT_RIGHT) / 2.0,
        last_plot_bottom + 34.0,
        time.unit
    );
    out.push_str("</svg>\n");
    out
}

/// One line: a path whose runs of known values are joined, a new run (`M`) after each gap; a
/// known value alone between gaps is a dot.
fn draw_series(
    out: &mut String,
    samples: &[Sample],
    values: &[Option<f64>],
    color: &str,
    x: &dyn Fn(f64) -> f64,
    y: &dyn Fn(f64) -> f64,
) {
    let mut d = String::new();
    let mut dots = String::new();
    let mut run = 0;
    for (i, value) in values.iter().enumerate() {
        let Some(v) = value else {
            run = 0;
            continue;
        };
        let (px, py) = (x(samples[i].t), y(*v));
        let _ = write!(d, "{}{px:.1} {py:.1} ", if run == 0 { 'M' } else { 'L' });
        let alone_after = values.get(i + 1).is_none_or(|n| n.is_none());
        if run == 0 && alone_after {
            let _ = write!(
                dots,
                r#"<circle cx="{px:.1}" cy="{py:.1}" r="1.8" fill="{color}"/>"#
            );
        }
        run += 1;
    }
    if !d.is_empty() {
        let _ = write!(
            out,
            r#"<path d="{}" fill="none" stroke="{color}" stroke-width="1.5" stroke-linejoin="round"/>"#,
            d.trim_end()
        );
    }
    out.push_str(&dots);
}

/// The time axis: its unit (seconds, minutes or hours, by the run's length) and round ticks.
struct TimeAxis {
    unit: &'static str,
    unit_s: f64,
    step_s: f64,
    ticks: u32,
}

impl TimeAxis {
    fn new(t_max: f64) -> TimeAxis {
        let (unit, unit_s) = if t_max <= 600.0 {
            ("s", 1.0)
        } else if t_max <= 600.0 * 60.0 {
            ("min", 60.0)
        } else {
            ("h", 3600.0)
        };
        // About eight ticks, on steps a clock reads well (15 s, 30 min, 6 h).
        let raw = t_max / unit_s / 8.0;
        let steps: &[f64] = if unit == "h" {
            &[1.0, 2.0, 3.0, 6.0, 12.0, 24.0]
        } else {
            &[1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0]
        };
        let step = steps
            .iter()
            .copied()
            .find(|&s| s >= raw)
            .unwrap_or_else(|| nice_step(raw));
        let step_s = step * unit_s;
        TimeAxis {
            unit,
            unit_s,
            step_s,
            ticks: (t_max / step_s + 1e-9).floor() as u32,
        }
    }
}

/// The round step (1, 2 or 5 times a power of ten) at or above `raw`.
fn nice_step(raw: f64) -> f64 {
    let raw = if raw.is_finite() && raw > 0.0 {
        raw
    } else {
        1.0
    };
    let power = 10f64.powf(raw.log10().floor());
    let m = raw / power;
    let nice = if m <= 1.0 + 1e-9 {
        1.0
    } else if m <= 2.0 + 1e-9 {
        2.0
    } else if m <= 5.0 + 1e-9 {
        5.0
    } else {
        10.0
    };
    nice * power
}

/// A tick's label: `v` with as many decimals as `step` needs, in thousands (`k`) or millions
/// (`M`) when the axis goes that high (`top`).
fn value_label(v: f64, step: f64, top: f64) -> String {
    let (div, suffix) = if top.is_finite() && top >= 1e6 {
        (1e6, "M")
    } else if top.is_finite() && top >= 1e4 {
        (1e3, "k")
    } else {
        (1.0, "")
    };
    if v == 0.0 {
        return "0".into();
    }
    let decimals = (-(step / div).log10().floor()).clamp(0.0, 6.0) as usize;
    format!("{:.*}{suffix}", decimals, v / div)
}

/// `s` safe as XML text or attribute value.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Control characters are not allowed in XML 1.0 at all.
            c if c.is_control() && !matches!(c, '\t' | '\n' | '\r') => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(pid: u32, rss_mib: u64, fds: u64, connections: Option<u64>) -> ServerSample {
        ServerSample {
            pid: Some(pid),
            rss_bytes: Some(rss_mib << 20),
            fds: Some(fds),
            cpu: Some(0.25),
            connections,
            subscriptions: connections.map(|c| c * 2),
            deliveries_total: connections.map(|c| c * 10),
        }
    }

    /// Two servers over five seconds; server 1 restarts at 3 s (nothing known of it then).
    fn samples() -> Vec<Sample> {
        (1..=5u32)
            .map(|i| {
                let restarting = i == 3;
                Sample {
                    t: f64::from(i),
                    servers: vec![
                        server(10, 100 + u64::from(i), 50 + u64::from(i), Some(1000)),
                        if restarting {
                            ServerSample::default()
                        } else {
                            server(if i < 3 { 20 } else { 21 }, 80, 40, None)
                        },
                    ],
                    clients_connected: 2000,
                    deliveries: u64::from(i) * 100,
                    pushes_accepted: 50,
                    pushes_failed: u64::from(restarting),
                }
            })
            .collect()
    }

    #[test]
    fn csv_has_a_header_and_a_row_per_sample_with_empty_cells_for_unknowns() {
        let text = csv(&samples());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 6);
        assert_eq!(
            lines[0],
            "t,clients_connected,deliveries_per_s,pushes_accepted_per_s,pushes_failed_per_s,\
             s0_pid,s0_rss_mib,s0_fds,s0_cpu,s0_connections,s0_subscriptions,\
             s1_pid,s1_rss_mib,s1_fds,s1_cpu,s1_connections,s1_subscriptions"
        );
        assert_eq!(
            lines[1],
            "1.000,2000,100.0,50.0,0.0,10,101.0,51,0.250,1000,2000,20,80.0,40,0.250,,"
        );
        assert_eq!(
            lines[3],
            "3.000,2000,300.0,50.0,1.0,10,103.0,53,0.250,1000,2000,,,,,,"
        );
        assert!(lines.iter().all(|l| l.split(',').count() == 17));
        assert_eq!(csv(&[]), CSV_HEAD.join(",") + "\n");
    }

    #[test]
    fn counts_are_per_second_of_the_time_between_samples() {
        let mut s = samples();
        s[1].t = 3.0; // two seconds after the first: a tick skipped
        assert_eq!(per_second(&s, 1, |s| s.deliveries), Some(100.0));
        assert_eq!(per_second(&s, 0, |s| s.deliveries), Some(100.0));
        s[0].t = 0.0;
        assert_eq!(per_second(&s, 0, |s| s.deliveries), None);
        // herald_deliveries_total: 10000 a sample for server 0, nothing across server 1's gap.
        let s = samples();
        assert_eq!(server_deliveries_per_second(&s, 0, 0), None);
        assert_eq!(server_deliveries_per_second(&s, 1, 0), Some(0.0));
        assert_eq!(server_deliveries_per_second(&s, 3, 1), None);
    }

    #[test]
    fn figures_start_peak_and_end_per_server() {
        let mut s = samples();
        s[4].servers[1] = ServerSample::default(); // server 1 gone at the end
        let f = server_figures(&s, 2.0);
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].rss_start, Some(102 << 20));
        assert_eq!(f[0].rss_peak, Some(105 << 20));
        assert_eq!(f[0].rss_end, Some(105 << 20));
        assert_eq!(
            (f[0].fds_start, f[0].fds_peak, f[0].fds_end),
            (Some(52), Some(55), Some(55))
        );
        // Server 1: known at 2 s and 4 s only.
        assert_eq!((f[1].fds_start, f[1].fds_end), (Some(40), Some(40)));
        assert_eq!(f[1].rss_peak, Some(80 << 20));
        let none = server_figures(&s, 9.0);
        assert_eq!(none, vec![ServerFigures::default(); 2]);
    }

    /// Checks that `svg` is one balanced tree of tags and that its text holds no bare `<` or
    /// `&`: enough to say a browser will parse it.
    fn well_formed(svg: &str) -> Result<(), String> {
        let mut open: Vec<&str> = Vec::new();
        let mut rest = svg;
        let mut roots = 0;
        while let Some(lt) = rest.find('<') {
            check_text(&rest[..lt])?;
            let gt = rest[lt..].find('>').ok_or("a tag not closed")? + lt;
            let tag = &rest[lt + 1..gt];
            rest = &rest[gt + 1..];
            if let Some(name) = tag.strip_prefix('/') {
                match open.pop() {
                    Some(o) if o == name.trim() => {}
                    o => return Err(format!("</{name}> closes {o:?}")),
                }
                continue;
            }
            let name = tag.split_whitespace().next().ok_or("an empty tag")?;
            if name.starts_with(['?', '!']) {
                return Err(format!("<{name}> not expected"));
            }
            if open.is_empty() {
                roots += 1;
            }
            // Attribute values: quoted, with no `<` and only escaped `&`.
            if !tag.matches('"').count().is_multiple_of(2) {
                return Err(format!("unbalanced quotes in <{tag}>"));
            }
            check_text(tag)?;
            if !tag.ends_with('/') {
                open.push(name);
            }
        }
        check_text(rest)?;
        if !open.is_empty() || roots != 1 || !rest.trim().is_empty() {
            return Err(format!("unclosed {open:?}, {roots} roots"));
        }
        Ok(())
    }

    fn check_text(text: &str) -> Result<(), String> {
        for (i, _) in text.match_indices('&') {
            let entity = &text[i..];
            if !["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"]
                .iter()
                .any(|e| entity.starts_with(e))
            {
                return Err(format!("a bare & in {text:?}"));
            }
        }
        if text.contains('<') {
            return Err(format!("a bare < in {text:?}"));
        }
        Ok(())
    }

    #[test]
    fn the_checker_refuses_what_is_not_well_formed() {
        assert!(well_formed("<svg><g><text>a &amp; b</text></g></svg>").is_ok());
        assert!(well_formed("<svg><g></svg>").is_err());
        assert!(well_formed("<svg><text>a & b</text></svg>").is_err());
        assert!(well_formed("<svg></svg><svg></svg>").is_err());
        assert!(well_formed(r#"<svg><a x="1/></svg>"#).is_err());
    }

    #[test]
    fn svg_is_well_formed_with_panels_legends_marks_and_gaps() {
        let marks = vec![
            (2.5, "churn".to_string()),
            (3.0, "kill s1 <SIGKILL> & restart".to_string()),
        ];
        let svg = svg(&samples(), "soak \"1k\" <clients>", &marks);
        assert!(svg.starts_with("<svg "), "{}", &svg[..40]);
        well_formed(&svg).unwrap();
        assert!(!svg.contains("<script") && !svg.contains("href"));
        for title in [
            "Resident memory (MiB)",
            "Open file descriptors",
            "Connections (clients subscribed",
            "Deliveries per second",
        ] {
            assert!(svg.contains(title), "{title}");
        }
        assert!(svg.contains("soak &quot;1k&quot; &lt;clients&gt;"));
        assert!(svg.contains("kill s1 &lt;SIGKILL&gt; &amp; restart"));
        // Each mark across the four plots, named once.
        assert_eq!(svg.matches("stroke-dasharray").count(), 8);
        assert_eq!(svg.matches(">churn</text>").count(), 1);
        assert!(svg.contains(">time (s)</text>"));
        // Server 1 (its own colour in every panel) is unknown at 3 s: its RSS line is two runs,
        // not a drop to zero.
        let rss = svg.split("</g>").next().unwrap();
        let red = rss.split("<path ").find(|p| p.contains(COLORS[1])).unwrap();
        let d = red.split('"').nth(1).unwrap();
        assert_eq!(d.matches('M').count(), 2, "{d}");
        assert_eq!(d.matches('L').count(), 2, "{d}");
        // Server 0 (blue) has no gap.
        let blue = rss.split("<path ").find(|p| p.contains(COLORS[0])).unwrap();
        assert_eq!(blue.split('"').nth(1).unwrap().matches('M').count(), 1);
        // Nothing at all: still a chart.
        well_formed(&super::svg(&[], "empty", &[])).unwrap();
    }

    #[test]
    fn axis_steps_are_round() {
        let cases = [
            (0.3, 0.5),
            (1.0, 1.0),
            (1.2, 2.0),
            (2.0, 2.0),
            (3.0, 5.0),
            (7.0, 10.0),
        ];
        for (raw, step) in cases {
            assert!((nice_step(raw) - step).abs() < 1e-12, "{raw}");
        }
        assert!((nice_step(1234.0) - 2000.0).abs() < 1e-9);
        assert_eq!(value_label(2.5, 0.5, 10.0), "2.5");
        assert_eq!(value_label(0.0, 10_000.0, 50_000.0), "0");
        assert_eq!(value_label(40_000.0, 10_000.0, 50_000.0), "40k");
        assert_eq!(value_label(1_500_000.0, 500_000.0, 2e6), "1.5M");
        let hours = TimeAxis::new(3.0 * 3600.0);
        assert_eq!((hours.unit, hours.step_s), ("min", 1800.0));
        let secs = TimeAxis::new(95.0);
        assert_eq!((secs.unit, secs.step_s, secs.ticks), ("s", 15.0, 6));
        let days = TimeAxis::new(48.0 * 3600.0);
        assert_eq!((days.unit, days.step_s), ("h", 6.0 * 3600.0));
    }
}
