//! The HTML report: one self-contained file (inline CSS and SVG, no scripts, nothing fetched at
//! view time) with charts of users, requests/s, failures/s and p50/p95 latency over time (the
//! p95 budget drawn as a line), a ramp's capacity (latency against users, the budget, the knee
//! and the break marked, and the curve's table), the per-task stats table, failures, and the
//! verdict; for one runner's run ([`render`]) or, one section per profile, for a whole run of
//! a LoadTest from its merged report ([`render_test`]).

use crate::stats::Stats;
use loadgate_api::capacity::{Capacity, CurvePoint};
use loadgate_api::load::Thresholds;
use loadgate_api::report::{HistoryPoint, TestReport};
use loadgate_api::stats::RequestStats;
use loadgate_api::summary::RunSummary;
use std::fmt::Write as _;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A budget as a dashed red line across the chart from `x.0` to `x.1` at height `y`, labelled.
fn budget_line(svg: &mut String, x: (f64, f64), y: f64, label: &str) {
    let _ = write!(
        svg,
        r##"<line x1="{l}" y1="{y:.1}" x2="{r}" y2="{y:.1}" stroke="#cf222e" stroke-dasharray="4 3"/><text x="{r}" y="{ty:.1}" font-size="10" fill="#cf222e" text-anchor="end">{}</text>"##,
        escape(label),
        l = x.0,
        r = x.1,
        ty = y - 3.0,
    );
}

/// One line chart as inline SVG: `series` are (label, colour, values), all over the same x;
/// `budget`, when given, is drawn as a dashed red line.
fn chart(
    title: &str,
    unit: &str,
    series: &[(&str, &str, Vec<f64>)],
    budget: Option<f64>,
) -> String {
    let (w, h, pad) = (640.0, 180.0, 36.0);
    let n = series.iter().map(|s| s.2.len()).max().unwrap_or(0);
    let max = series
        .iter()
        .flat_map(|s| s.2.iter().copied())
        .chain(budget)
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
    if let Some(budget) = budget {
        budget_line(
            &mut svg,
            (pad, w - pad),
            y(budget),
            &format!("budget {budget}{unit}"),
        );
    }
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

/// One series of a curve chart: (label, colour, the value of a step).
type CurveSeries = (&'static str, &'static str, fn(&CurvePoint) -> f64);

/// Latency against load over a ramp's or a search's steps (users, or the rate a search
/// offered): p50 and p95 per step, the p95 budget, the highest step inside every budget (green)
/// and the break (red).
fn curve_chart(curve: &[CurvePoint], capacity: Option<&Capacity>, budget: Option<f64>) -> String {
    curve_chart_of(
        "Latency",
        curve,
        capacity,
        budget.map(|b| (b, format!("p95 budget {b} ms"))),
        &[
            ("p50", "#0969da", |p| p.p50_ms),
            ("p95", "#bf8700", |p| p.p95_ms),
        ],
    )
}

/// An LLM's timings against load: TTFT p95 and TPOT p95 per step (ms), the TTFT budget, the
/// knee and the break; empty when no step streamed LLM answers.
fn llm_curve_chart(
    curve: &[CurvePoint],
    capacity: Option<&Capacity>,
    ttft_budget: Option<f64>,
) -> String {
    if curve.iter().all(|p| p.llm.is_none()) {
        return String::new();
    }
    curve_chart_of(
        "TTFT, ITL and TPOT (p95)",
        curve,
        capacity,
        ttft_budget.map(|b| (b, format!("TTFT p95 budget {b} ms"))),
        &[
            ("TTFT p95", "#8250df", |p| {
                p.llm.map_or(0.0, |l| l.ttft_p95_ms)
            }),
            ("ITL p95", "#1a7f37", |p| {
                p.llm.map_or(0.0, |l| l.itl_p95_ms)
            }),
            ("TPOT p95", "#bf8700", |p| {
                p.llm.map_or(0.0, |l| l.tpot_p95_ms)
            }),
        ],
    )
}

/// `what` against load over a ramp's or a search's steps: `series` per step, a budget line, the
/// highest step inside every budget (green) and the break (red).
fn curve_chart_of(
    what: &str,
    curve: &[CurvePoint],
    capacity: Option<&Capacity>,
    budget: Option<(f64, String)>,
    series: &[CurveSeries],
) -> String {
    let (w, h, pad) = (640.0, 200.0, 36.0);
    let max = curve
        .iter()
        .flat_map(|p| series.iter().map(move |(_, _, value)| value(p)))
        .chain(budget.as_ref().map(|(b, _)| *b))
        .fold(0.0f64, f64::max)
        .max(1e-9);
    let search = curve.iter().any(|p| p.offered_rps.is_some());
    let load = |p: &CurvePoint| p.offered_rps.unwrap_or(f64::from(p.users));
    let unit = if search { "req/s offered" } else { "users" };
    let top = curve.iter().map(load).fold(1.0f64, f64::max);
    let x = |load: f64| pad + (w - 2.0 * pad) * load / top;
    let y = |v: f64| h - pad + (pad * 2.0 - h) * (v / max);
    let mut svg = format!(
        r##"<figure><figcaption>{what} against {unit} (one point per step)</figcaption><svg viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" aria-label="{what} against {unit}"><line x1="{pad}" y1="{b}" x2="{r}" y2="{b}" stroke="#999"/><line x1="{pad}" y1="{pad}" x2="{pad}" y2="{b}" stroke="#999"/><text x="2" y="{t}" font-size="10">{max:.0} ms</text><text x="2" y="{b}" font-size="10">0</text><text x="{r}" y="{l}" font-size="10" text-anchor="end">{top} {unit}</text>"##,
        b = h - pad,
        r = w - pad,
        t = pad + 4.0,
        l = h - pad + 14.0,
    );
    if let Some((budget, label)) = &budget {
        budget_line(&mut svg, (pad, w - pad), y(*budget), label);
    }
    let mut marks = Vec::new();
    if let Some(c) = capacity {
        if let Some(rate) = c.offered_rps {
            marks.push((rate, "#1a7f37", format!("holds {rate} req/s")));
        } else if c.max_users_within_budget > 0 {
            marks.push((
                f64::from(c.max_users_within_budget),
                "#1a7f37",
                format!("holds {} users", c.max_users_within_budget),
            ));
        }
        if let Some(at) = &c.broke_at {
            let at = at.offered_rps.unwrap_or(f64::from(at.users));
            marks.push((at, "#cf222e", format!("breaks at {at}")));
        }
    }
    for (i, (at, colour, label)) in marks.iter().enumerate() {
        let _ = write!(
            svg,
            r#"<line x1="{x:.1}" y1="{pad}" x2="{x:.1}" y2="{b}" stroke="{colour}" stroke-width="1.5"/><text x="{tx:.1}" y="{ty}" font-size="11" fill="{colour}">{}</text>"#,
            escape(label),
            x = x(*at),
            tx = x(*at) + 3.0,
            ty = pad + 12.0 + 14.0 * i as f64,
            b = h - pad,
        );
    }
    for (i, &(label, colour, value)) in series.iter().enumerate() {
        let points: Vec<String> = curve
            .iter()
            .map(|p| format!("{:.1},{:.1}", x(load(p)), y(value(p))))
            .collect();
        let _ = write!(
            svg,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{}"/>"#,
            points.join(" ")
        );
        for p in curve {
            let _ = write!(
                svg,
                r#"<circle cx="{:.1}" cy="{:.1}" r="2.5" fill="{colour}"/>"#,
                x(load(p)),
                y(value(p))
            );
        }
        let _ = write!(
            svg,
            r#"<text x="{}" y="14" font-size="11" fill="{colour}">{label}</text>"#,
            pad + 80.0 * i as f64
        );
    }
    svg.push_str("</svg></figure>");
    svg
}

/// A ramp's or a search's capacity: the sentence, latency against load, and the curve as a
/// table.
fn capacity_section(out: &mut String, summary: &RunSummary, thresholds: &Thresholds) {
    if summary.curve.is_empty() {
        return;
    }
    out.push_str("<h3>Capacity</h3>");
    if let Some(capacity) = &summary.capacity {
        let _ = write!(
            out,
            r#"<p class="capacity">{}</p>"#,
            escape(&capacity.sentence(thresholds))
        );
    }
    out.push_str(&curve_chart(
        &summary.curve,
        summary.capacity.as_ref(),
        thresholds.p95_ms,
    ));
    out.push_str(&llm_curve_chart(
        &summary.curve,
        summary.capacity.as_ref(),
        thresholds.ttft_p95_ms,
    ));
    let search = summary.curve.iter().any(|p| p.offered_rps.is_some());
    let llm = summary.curve.iter().any(|p| p.llm.is_some());
    let _ = write!(
        out,
        "<table><tr><th>{}</th><th>Seconds</th><th>Requests</th><th>req/s</th><th>p50 ms</th><th>p95 ms</th><th>p99 ms</th><th>Error rate</th>{}</tr>",
        if search { "Offered req/s" } else { "Users" },
        if llm {
            "<th>TTFT p95 ms</th><th>TPOT p95 ms</th><th>Output tokens/s</th>"
        } else {
            ""
        }
    );
    for p in &summary.curve {
        let load = match p.offered_rps {
            Some(rate) => format!("{rate}"),
            None => p.users.to_string(),
        };
        let _ = write!(
            out,
            "<tr><td>{load}</td><td>{:.1}</td><td>{}</td><td>{:.1}</td><td>{:.1}</td><td>{:.1}</td><td>{:.1}</td><td>{:.2}%</td>{}</tr>",
            p.seconds,
            p.requests,
            p.rps,
            p.p50_ms,
            p.p95_ms,
            p.p99_ms,
            p.error_rate * 100.0,
            match (llm, p.llm) {
                (true, Some(l)) => format!(
                    "<td>{:.1}</td><td>{:.1}</td><td>{:.1}</td>",
                    l.ttft_p95_ms, l.tpot_p95_ms, l.output_tokens_per_second
                ),
                (true, None) => "<td></td><td></td><td></td>".to_owned(),
                (false, _) => String::new(),
            }
        );
    }
    out.push_str("</table>");
}

/// LLM tasks' figures: TTFT, ITL, TPOT and whole latency (p50 / p95 / p99 ms), tokens, output
/// tokens per second and goodput, per LLM task and in all.
fn llm_table(out: &mut String, summary: &RunSummary) {
    if summary.total.llm.is_none() {
        return;
    }
    out.push_str("<h3>LLM answers</h3><table><tr><th>Name</th><th>Answered</th><th>TTFT ms p50 / p95 / p99</th><th>ITL ms p50 / p95 / p99</th><th>TPOT ms p50 / p95 / p99</th><th>Input tokens</th><th>Output tokens</th><th>Output tokens/s</th><th>Goodput</th></tr>");
    let timing = |t: &loadgate_api::stats::TimingStats| {
        format!("{:.1} / {:.1} / {:.1}", t.p50_ms, t.p95_ms, t.p99_ms)
    };
    for stats in summary.tasks.iter().chain(std::iter::once(&summary.total)) {
        let Some(l) = &stats.llm else { continue };
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{} of {}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} ({})</td><td>{:.1}</td><td>{:.1}%</td></tr>",
            escape(&stats.name),
            l.answered,
            l.requests,
            timing(&l.ttft),
            timing(&l.itl),
            timing(&l.tpot),
            l.input_tokens,
            l.output_tokens,
            crate::report::tokens_counted_by(l),
            l.output_tokens_per_second,
            l.goodput * 100.0
        );
    }
    out.push_str("</table>");
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

/// One profile's part of a report.
pub struct Section<'a> {
    /// Its summary (merged, for several runners), verdict, curve and capacity.
    pub summary: &'a RunSummary,
    /// The budgets it was judged on.
    pub thresholds: &'a Thresholds,
    /// Once a second.
    pub history: &'a [HistoryPoint],
    /// Failures by (method, name, reason) with their count, when known (a lone runner's).
    pub failures: Vec<(&'a str, &'a str, &'a str, u64)>,
    /// Embeddings per second, per core, and their cost (a LoadTest's report).
    pub efficiency: Option<&'a loadgate_api::efficiency::Efficiency>,
}

/// The report for one run, judged against `thresholds`.
pub fn render(summary: &RunSummary, stats: &Stats, thresholds: &Thresholds) -> String {
    let history = crate::history::of_stats(stats);
    let section = Section {
        summary,
        thresholds,
        history: &history,
        failures: stats
            .failures
            .iter()
            .map(|((method, name, error), count)| {
                (method.as_str(), name.as_str(), error.as_str(), *count)
            })
            .collect(),
        efficiency: None,
    };
    page(
        &format!("loadrunner: {}", summary.profile),
        &format!("loadrunner report: {}", summary.profile),
        &[section],
        false,
    )
}

/// One page for a whole run of a LoadTest: every profile that finished, in order, each with its
/// verdict, charts (budget lines drawn), capacity (the knee and the break marked) and tables.
pub fn render_test(report: &TestReport) -> String {
    let sections: Vec<Section<'_>> = report
        .profiles
        .iter()
        .map(|p| Section {
            summary: &p.summary,
            thresholds: &p.thresholds,
            history: &p.history,
            // The runners' most frequent reasons, added up (their full lists stay in their pods).
            failures: (p.summary.failure_reasons.iter())
                .map(|r| {
                    let name = r.path.as_deref().unwrap_or(&r.task);
                    (r.method.as_str(), name, r.reason.as_str(), r.count)
                })
                .collect(),
            efficiency: p.efficiency.as_ref(),
        })
        .collect();
    let passed = report.profiles.iter().all(|p| p.summary.passed);
    let mut heading = format!(
        "LoadTest {} — run {}, generation {}",
        report.test, report.run, report.generation
    );
    if report.profiles.is_empty() {
        heading.push_str(" (no profile finished)");
    } else {
        heading.push_str(if passed { ": PASS" } else { ": FAIL" });
    }
    if let Some(cold) = report.cold_start_seconds {
        heading.push_str(&format!(" — target cold start {cold:.1} s"));
    }
    page(
        &format!("loadgate: {}", report.test),
        &heading,
        &sections,
        true,
    )
}

/// A page of `sections`, each under its profile's name when `titled`.
fn page(title: &str, heading: &str, sections: &[Section<'_>], titled: bool) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title><style>
body{{font:14px system-ui,sans-serif;margin:2em;color:#222}} table{{border-collapse:collapse}} td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}
td:nth-child(2),th:nth-child(2){{text-align:left}} figure{{margin:1em 0}} figcaption{{font-weight:600}} .capacity{{font-size:16px;font-weight:600}} .verdict{{font-size:20px;font-weight:700}} .pass{{color:#1a7f37}} .fail{{color:#cf222e}}
</style></head><body><h1>{heading}</h1>"#,
        title = escape(title),
        heading = escape(heading),
    );
    for s in sections {
        section(&mut out, s, titled);
    }
    out.push_str("</body></html>\n");
    out
}

/// What the gates beyond budgets found: the warm-up left out, an abort, the quality check,
/// the efficiency.
fn gates(out: &mut String, s: &Section<'_>) {
    let summary = s.summary;
    if let Some(warmup) = summary.warmup_seconds {
        let _ = write!(
            out,
            "<p>Warm-up: the first {warmup:.1} s were sent and are drawn below, but no figure counts them.</p>"
        );
    }
    if let Some(abort) = &summary.aborted {
        let _ = write!(
            out,
            "<p><strong>Aborted</strong> after {:.0} s: {}; {:.0} s of its planned load not run.</p>",
            abort.after_seconds,
            escape(&abort.message),
            abort.saved_seconds
        );
    }
    if let Some(q) = &summary.quality {
        let _ = write!(
            out,
            "<p>Quality under load: {} sampled answers, {} below cosine {} (worst {}).</p>",
            q.sampled,
            q.bad,
            q.min_cosine,
            q.worst_cosine
                .map_or("not comparable".to_owned(), |w| format!("{w:.5}"))
        );
    }
    if let Some(e) = s.efficiency {
        let _ = write!(out, "<p>Efficiency: {}.</p>", escape(&e.sentence()));
    }
    if let Some(c) = &summary.connections {
        let tls = match (c.tls_p50_ms, c.tls_p95_ms) {
            (Some(p50), Some(p95)) => format!("; TLS handshake p50 {p50:.1} ms, p95 {p95:.1} ms"),
            _ => String::new(),
        };
        let _ = write!(
            out,
            "<p>Connections: {} opened over {}; connect p50 {:.1} ms, p95 {:.1} ms{tls} (not in any request's latency).</p>",
            c.opened,
            escape(&c.protocol),
            c.connect_p50_ms,
            c.connect_p95_ms
        );
    }
    if let Some(d) = &summary.dataset {
        let _ = write!(
            out,
            "<p>Dataset ({}): {} texts, {} rerank cases; tokens per text (estimated) p50 {}, p95 {}, max {}.</p>",
            escape(&d.source),
            d.texts,
            d.rerank_cases,
            d.tokens_p50,
            d.tokens_p95,
            d.tokens_max
        );
    }
}

fn section(out: &mut String, s: &Section<'_>, titled: bool) {
    let summary = s.summary;
    let thresholds = s.thresholds;
    let history = s.history;
    let series = |f: &dyn Fn(&HistoryPoint) -> f64| history.iter().map(f).collect::<Vec<f64>>();
    if titled {
        let _ = write!(out, "<h2>Profile {}</h2>", escape(&summary.profile));
    }
    let (text, class) = if summary.passed {
        ("PASS", "pass")
    } else {
        ("FAIL", "fail")
    };
    let _ = write!(out, r#"<p class="verdict {class}">{text}</p>"#);
    let load = if summary.curve.iter().any(|p| p.offered_rps.is_some()) {
        format!("a search, at most {} requests in flight", summary.users)
    } else {
        format!("{} users peak", summary.users)
    };
    let _ = write!(
        out,
        "<p>{load}, {:.1} s; {} requests, {} failures ({:.2}%), {:.1} req/s.</p>",
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
    gates(out, s);
    if history.is_empty() {
        out.push_str(
            "<p>No per-second history: only the runners' termination messages were read.</p>",
        );
    } else {
        out.push_str(&chart(
            "Users",
            "",
            &[("users", "#0969da", series(&|r| f64::from(r.users)))],
            None,
        ));
        out.push_str(&chart(
            "Requests and failures per second",
            "/s",
            &[
                ("requests/s", "#1a7f37", series(&|r| r.requests as f64)),
                ("failures/s", "#cf222e", series(&|r| r.failures as f64)),
            ],
            None,
        ));
        out.push_str(&chart(
            "Latency (each second's requests)",
            " ms",
            &[
                ("p50", "#0969da", series(&|r| r.p50_ms)),
                ("p95", "#bf8700", series(&|r| r.p95_ms)),
            ],
            thresholds.p95_ms,
        ));
        if history.iter().any(|p| p.llm.is_some()) {
            let llm = |f: fn(&loadgate_api::report::PointLlm) -> f64| {
                series(&|r| r.llm.as_ref().map_or(0.0, f))
            };
            out.push_str(&chart(
                "Time to first token (each second's answers)",
                " ms",
                &[("TTFT p95", "#8250df", llm(|l| l.ttft_p95_ms))],
                thresholds.ttft_p95_ms,
            ));
            out.push_str(&chart(
                "Time per output token (each second's answers)",
                " ms",
                &[("TPOT p95", "#bf8700", llm(|l| l.tpot_p95_ms))],
                thresholds.tpot_p95_ms,
            ));
            out.push_str(&chart(
                "Output tokens per second",
                "/s",
                &[(
                    "output tokens/s",
                    "#1a7f37",
                    llm(|l| l.output_tokens as f64),
                )],
                thresholds.min_output_tokens_per_second,
            ));
        }
    }
    capacity_section(out, summary, thresholds);
    out.push_str("<h3>Requests</h3><table><tr><th>Method</th><th>Name</th><th>Requests</th><th>Failures</th><th>Error rate</th><th>req/s</th><th>Mean ms</th><th>p50 ms</th><th>p95 ms</th><th>p99 ms</th><th>Max ms</th></tr>");
    for task in &summary.tasks {
        row(out, task);
    }
    row(out, &summary.total);
    out.push_str("</table>");
    llm_table(out, summary);
    if !s.failures.is_empty() {
        out.push_str("<h3>Failures</h3><table><tr><th>Method</th><th>Name</th><th>Error</th><th>Occurrences</th></tr>");
        for (method, name, error, count) in &s.failures {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use loadgate_api::capacity::BreakPoint;

    fn point(users: u32, p95_ms: f64) -> CurvePoint {
        CurvePoint {
            users,
            users_throughout: users,
            offered_rps: None,
            seconds: 2.0,
            requests: 100,
            rps: 50.0,
            p50_ms: p95_ms / 2.0,
            p95_ms,
            p99_ms: p95_ms,
            error_rate: 0.0,
            llm: None,
        }
    }

    #[test]
    fn a_ramps_report_shows_its_capacity_budget_knee_and_break() {
        let stats = Stats::new(&[]);
        let total = stats.total.summary(10.0);
        let thresholds = Thresholds {
            p95_ms: Some(500.0),
            ..Thresholds::default()
        };
        let mut summary = RunSummary {
            profile: "ramp <up>".into(),
            duration_seconds: 10.0,
            users: 30,
            total,
            tasks: Vec::new(),
            violations: Vec::new(),
            passed: true,
            interrupted: false,
            start_delay: None,
            started_at_ms: None,
            results: None,
            curve: vec![point(10, 100.0), point(20, 400.0), point(30, 900.0)],
            capacity: Some(Capacity {
                max_users_within_budget: 20,
                max_rps_within_budget: 50.0,
                offered_rps: None,
                limited_by: Some("p95Ms".into()),
                broke_at: Some(BreakPoint {
                    users: 30,
                    offered_rps: None,
                    rps: 50.0,
                    metric: "p95Ms".into(),
                    measured: 900.0,
                    budget: 500.0,
                }),
                output_tokens_per_second: None,
            }),
            aborted: None,
            warmup_seconds: None,
            quality: None,
            connections: None,
            dataset: None,
            failure_reasons: Vec::new(),
        };
        let html = render(&summary, &stats, &thresholds);
        for wanted in [
            "<h3>Capacity</h3>",
            "holds p95 &lt; 500 ms up to 50.0 req/s (20 users); breaks at 30 users: p95 900 ms",
            "p95 budget 500 ms",
            "holds 20 users",
            "breaks at 30",
            "ramp &lt;up&gt;",
        ] {
            assert!(html.contains(wanted), "{wanted} missing");
        }
        assert_eq!(
            html.matches("<circle").count(),
            6,
            "two series of three steps"
        );
        assert!(!html.contains("LLM answers") && !html.contains("TTFT"));
        // With LLM answers: TTFT, ITL and TPOT against users with the TTFT budget, the curve
        // table's LLM columns, and the LLM table.
        for (p, ttft) in summary.curve.iter_mut().zip([120.0, 310.0, 880.0]) {
            p.llm = Some(loadgate_api::capacity::StepLlm {
                ttft_p95_ms: ttft,
                itl_p95_ms: 12.0,
                tpot_p95_ms: 11.0,
                output_tokens_per_second: 400.0,
            });
        }
        summary.total.llm = Some(loadgate_api::stats::LlmStats {
            requests: 10,
            answered: 10,
            ..Default::default()
        });
        let llm_budget = Thresholds {
            ttft_p95_ms: Some(500.0),
            ..thresholds
        };
        let html = render(&summary, &stats, &llm_budget);
        for wanted in [
            "TTFT, ITL and TPOT (p95) against users",
            "TTFT p95 budget 500 ms",
            "<th>TTFT p95 ms</th>",
            "<td>880.0</td>",
            "<h3>LLM answers</h3>",
            "10 of 10",
        ] {
            assert!(html.contains(wanted), "{wanted} missing");
        }
        // A run that is not a ramp has no capacity section.
        summary.curve.clear();
        summary.capacity = None;
        assert!(!render(&summary, &stats, &thresholds).contains("Capacity"));
    }

    #[test]
    fn a_whole_tests_page_has_every_profile_and_a_searchs_offered_axis() {
        use loadgate_api::report::{ProfileReport, TestReport};
        let stats = Stats::new(&[]);
        let summary = |name: &str, passed: bool| RunSummary {
            profile: name.into(),
            duration_seconds: 10.0,
            users: 30,
            total: stats.total.summary(10.0),
            tasks: Vec::new(),
            violations: Vec::new(),
            passed,
            interrupted: false,
            start_delay: None,
            started_at_ms: None,
            results: None,
            curve: Vec::new(),
            capacity: None,
            aborted: None,
            warmup_seconds: None,
            quality: None,
            connections: None,
            dataset: None,
            failure_reasons: Vec::new(),
        };
        let mut search = summary("find", true);
        search.curve = [10.0, 20.0, 30.0]
            .map(|rate| CurvePoint {
                offered_rps: Some(rate),
                ..point(3, rate * 10.0)
            })
            .to_vec();
        let history = vec![HistoryPoint {
            second: 0,
            users: 3,
            requests: 10,
            failures: 0,
            p50_ms: 5.0,
            p95_ms: 9.0,
            warmup: Default::default(),
            llm: None,
        }];
        let report = TestReport {
            test: "quick".into(),
            run: "initial".into(),
            generation: 2,
            profiles: vec![
                ProfileReport {
                    summary: summary("ramp", false),
                    thresholds: Thresholds::default(),
                    history: Vec::new(),
                    efficiency: None,
                },
                ProfileReport {
                    summary: search,
                    thresholds: Thresholds::default(),
                    history,
                    efficiency: None,
                },
            ],
            cold_start_seconds: None,
        };
        let html = render_test(&report);
        for wanted in [
            "LoadTest quick — run initial, generation 2: FAIL",
            "<h2>Profile ramp</h2>",
            "<h2>Profile find</h2>",
            "No per-second history",
            "Latency against req/s offered",
            "<th>Offered req/s</th>",
        ] {
            assert!(html.contains(wanted), "{wanted} missing");
        }
    }
}
