//! The HTML report: one self-contained file (inline CSS and SVG, no scripts, nothing fetched at
//! view time) with charts of users, requests/s, failures/s and p50/p95 latency over time, the
//! per-task stats table, failures, and the verdict.

use crate::stats::{HistoryRow, Stats};
use loadgate_api::load::{RequestStats, RunSummary};
use std::fmt::Write as _;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// One line chart as inline SVG: `series` are (label, colour, values), all over the same x.
fn chart(title: &str, unit: &str, series: &[(&str, &str, Vec<f64>)]) -> String {
    let (w, h, pad) = (640.0, 180.0, 36.0);
    let n = series.iter().map(|s| s.2.len()).max().unwrap_or(0);
    let max = series
        .iter()
        .flat_map(|s| s.2.iter().copied())
        .fold(0.0f64, f64::max)
        .max(1e-9);
    let x = |i: usize| {
        pad + (w - 2.0 * pad)
            * if n > 1 {
                i as f64 / (n - 1) as f64
            } else {
                0.0
            }
    };
    let y = |v: f64| h - pad + (pad * 2.0 - h) * (v / max);
    let mut svg = format!(
        r#"<figure><figcaption>{}</figcaption><svg viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" aria-label="{}">"#,
        escape(title),
        escape(title)
    );
    let _ = write!(
        svg,
        r##"<line x1="{pad}" y1="{b}" x2="{r}" y2="{b}" stroke="#999"/><line x1="{pad}" y1="{pad}" x2="{pad}" y2="{b}" stroke="#999"/><text x="2" y="{t}" font-size="10">{max:.1}{unit}</text><text x="2" y="{b}" font-size="10">0</text><text x="{r}" y="{l}" font-size="10" text-anchor="end">{n} s</text>"##,
        b = h - pad,
        r = w - pad,
        t = pad + 4.0,
        l = h - pad + 14.0,
        unit = escape(unit)
    );
    for (i, (label, colour, values)) in series.iter().enumerate() {
        let points: Vec<String> = values
            .iter()
            .enumerate()
            .map(|(i, v)| format!("{:.1},{:.1}", x(i), y(*v)))
            .collect();
        let _ = write!(
            svg,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{}"/><text x="{}" y="14" font-size="11" fill="{colour}">{}</text>"#,
            points.join(" "),
            pad + 110.0 * i as f64,
            escape(label)
        );
    }
    svg.push_str("</svg></figure>");
    svg
}

fn row(out: &mut String, s: &RequestStats) {
    let _ = write!(
        out,
        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.2}%</td><td>{:.1}</td><td>{:.1}</td><td>{:.1}</td><td>{:.1}</td><td>{:.1}</td><td>{:.1}</td></tr>",
        escape(&s.method),
        escape(&s.name),
        s.requests,
        s.failures,
        s.error_rate * 100.0,
        s.rps,
        s.mean_ms,
        s.p50_ms,
        s.p95_ms,
        s.p99_ms,
        s.max_ms
    );
}

/// The report for one run.
pub fn render(summary: &RunSummary, stats: &Stats) -> String {
    let history: &[HistoryRow] = &stats.history;
    let series = |f: &dyn Fn(&HistoryRow) -> f64| history.iter().map(f).collect::<Vec<f64>>();
    let verdict = if summary.passed {
        ("PASS", "#1a7f37")
    } else {
        ("FAIL", "#cf222e")
    };
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>loadrunner: {name}</title><style>
body{{font:14px system-ui,sans-serif;margin:2em;color:#222}} table{{border-collapse:collapse}} td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}
td:nth-child(2),th:nth-child(2){{text-align:left}} figure{{margin:1em 0}} figcaption{{font-weight:600}} .verdict{{font-size:20px;font-weight:700;color:{colour}}}
</style></head><body><h1>loadrunner report: {name}</h1><p class="verdict">{text}</p>"#,
        name = escape(&summary.profile),
        colour = verdict.1,
        text = verdict.0
    );
    let _ = write!(
        out,
        "<p>{} users peak, {:.1} s; {} requests, {} failures ({:.2}%), {:.1} req/s.</p>",
        summary.users,
        summary.duration_seconds,
        summary.total.requests,
        summary.total.failures,
        summary.total.error_rate * 100.0,
        summary.total.rps
    );
    if !summary.violations.is_empty() {
        out.push_str("<ul>");
        for v in &summary.violations {
            let _ = write!(out, "<li>{}</li>", escape(&v.message));
        }
        out.push_str("</ul>");
    }
    if summary.interrupted {
        out.push_str("<p><strong>Interrupted:</strong> the run was stopped early; this is what was measured.</p>");
    }
    out.push_str(&chart(
        "Users",
        "",
        &[("users", "#0969da", series(&|r| f64::from(r.users)))],
    ));
    out.push_str(&chart(
        "Requests and failures per second",
        "/s",
        &[
            (
                "requests/s",
                "#1a7f37",
                series(&|r| r.window.requests as f64),
            ),
            (
                "failures/s",
                "#cf222e",
                series(&|r| r.window.failures as f64),
            ),
        ],
    ));
    out.push_str(&chart(
        "Latency (each second's requests)",
        " ms",
        &[
            ("p50", "#0969da", series(&|r| r.window.p50_ms())),
            ("p95", "#bf8700", series(&|r| r.window.p95_ms())),
        ],
    ));
    out.push_str("<h2>Requests</h2><table><tr><th>Method</th><th>Name</th><th>Requests</th><th>Failures</th><th>Error rate</th><th>req/s</th><th>Mean ms</th><th>p50 ms</th><th>p95 ms</th><th>p99 ms</th><th>Max ms</th></tr>");
    for task in &summary.tasks {
        row(&mut out, task);
    }
    row(&mut out, &summary.total);
    out.push_str("</table>");
    if !stats.failures.is_empty() {
        out.push_str("<h2>Failures</h2><table><tr><th>Method</th><th>Name</th><th>Error</th><th>Occurrences</th></tr>");
        for ((method, name, error), count) in &stats.failures {
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{count}</td></tr>",
                escape(method),
                escape(name),
                escape(error)
            );
        }
        out.push_str("</table>");
    }
    out.push_str("</body></html>\n");
    out
}
