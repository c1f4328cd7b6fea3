//! What a run prints while it runs and when it ends: a live progress line on a terminal (a log
//! line every 10 s otherwise) and the closing summary with its verdict.

use loadgate_api::load::Thresholds;
use loadgate_api::summary::RunSummary;
use loadgate_results::stats::Stats;
use std::io::{IsTerminal, Write};
use std::time::Instant;

/// The summary a run ends with on standard output: totals, broken budgets, an open model's
/// late starts, the capacity sentence and the verdict.
pub fn print_summary(summary: &RunSummary, thresholds: &Thresholds) {
    let t = &summary.total;
    println!(
        "{}: {} requests, {} failures ({:.2}%), {:.1} req/s over {:.1}s; p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        summary.profile,
        t.requests,
        t.failures,
        t.error_rate * 100.0,
        t.rps,
        summary.duration_seconds,
        t.p50_ms,
        t.p95_ms,
        t.p99_ms,
        t.max_ms
    );
    for v in &summary.violations {
        println!("FAIL {}", v.message);
    }
    if !summary.failure_reasons.is_empty() {
        let reasons = &summary.failure_reasons;
        let shown = reasons
            .len()
            .min(loadgate_api::failures::STATUS_FAILURE_REASONS);
        let top: Vec<String> = reasons[..shown].iter().map(|r| r.describe()).collect();
        println!("failures by reason: {}", top.join("; "));
    }
    if let Some(delay) = &summary.start_delay {
        println!(
            "open model: requests started up to {:.1} ms late (p95 {:.1} ms); {} not sent, counted as failures ({} dropped for want of a free user, {} still waiting at the end)",
            delay.max_ms,
            delay.p95_ms,
            t.not_sent,
            delay.dropped,
            t.not_sent.saturating_sub(delay.dropped)
        );
    }
    if let Some(capacity) = &summary.capacity {
        println!("capacity: {}", capacity.sentence(thresholds));
    }
    if t.embeddings > 0 && summary.duration_seconds > 0.0 {
        println!(
            "embeddings: {} texts embedded by successful requests, {:.1}/s",
            t.embeddings,
            t.embeddings as f64 / summary.duration_seconds
        );
    }
    if let Some(l) = &t.llm {
        println!("{}", llm_line(l));
    }
    if let Some(warmup) = summary.warmup_seconds {
        println!("warm-up: the first {warmup:.1} s were sent but are counted in no figure");
    }
    if let Some(c) = &summary.connections {
        let tls = c.tls_p95_ms.map_or(String::new(), |p95| {
            format!(", TLS handshake p95 {p95:.1} ms")
        });
        println!(
            "connections: {} opened over {}; connect p95 {:.1} ms{tls} (not in the latencies above)",
            c.opened, c.protocol, c.connect_p95_ms
        );
    }
    if let Some(q) = &summary.quality {
        println!(
            "quality: {} sampled answers, {} below cosine {}{}",
            q.sampled,
            q.bad,
            q.min_cosine,
            q.worst_cosine
                .map_or(String::new(), |w| format!(" (worst {w:.5})"))
        );
    }
    if let Some(abort) = &summary.aborted {
        println!(
            "ABORTED after {:.0} s on its budgets ({}); {:.0} s of planned load not run",
            abort.after_seconds, abort.message, abort.saved_seconds
        );
    }
    if summary.interrupted {
        println!("INTERRUPTED: the run was stopped early; reports hold what was measured");
    }
    println!("{}", if summary.passed { "PASS" } else { "FAIL" });
}

/// An LLM run in one line: "llm: 120 answers (120 streamed); TTFT p50 150.2 ms, p95 160.1 ms;
/// ITL p95 10.3 ms; TPOT p95 10.4 ms; 4800 output tokens, 412.3/s (counted by usage); goodput
/// 98.3%".
pub fn llm_line(l: &loadgate_api::stats::LlmStats) -> String {
    format!(
        "llm: {} answers of {} requests ({} streamed); TTFT p50 {:.1} ms, p95 {:.1} ms; ITL p95 {:.1} ms; TPOT p95 {:.1} ms; {} input and {} output tokens, {:.1} output tokens/s (counted by {}); goodput {:.1}%",
        l.answered,
        l.requests,
        l.streamed,
        l.ttft.p50_ms,
        l.ttft.p95_ms,
        l.itl.p95_ms,
        l.tpot.p95_ms,
        l.input_tokens,
        l.output_tokens,
        l.output_tokens_per_second,
        loadgate_results::report::tokens_counted_by(l),
        l.goodput * 100.0
    )
}

/// What a run prints while it runs, once a second with its stats: a live line on a terminal;
/// otherwise every 10 s a log line (`progress: steady 20/60s, 50 users, 48.2 req/s, …`) and,
/// with `machine_line` (a runner pod, `--results-log`), the progress line the operator reads
/// into `status.profiles[].progress` ([`loadgate_results::progress`]).
pub fn progress_printer(
    profile: &str,
    peak_users: u32,
    planned_seconds: u64,
    machine_line: bool,
) -> impl FnMut(&Stats, Instant) + Send + 'static {
    let tty = std::io::stderr().is_terminal();
    let profile = profile.to_owned();
    let every = loadgate_api::progress::PROGRESS_EVERY_SECONDS;
    // A late tick must not skip a line: each is due once `every` more seconds have passed.
    let mut next_at = every;
    move |stats, started| {
        let Some(row) = stats.history.last() else {
            return;
        };
        let secs = started.elapsed().as_secs();
        let (w, t) = (&row.window, &row.total);
        if tty {
            eprint!(
                "\r[{secs:>4}s] users {}/{peak_users}  rps {:>7.1}  p95 {:>7.1} ms  failures {} ({:.2}%)   ",
                row.users,
                w.requests as f64,
                w.p95_ms(),
                t.failures,
                t.error_rate() * 100.0
            );
        }
        if secs < next_at {
            return;
        }
        next_at = (secs / every + 1) * every;
        let progress = loadgate_results::progress::of_stats(stats, secs, planned_seconds);
        if !tty {
            tracing::info!("progress: {profile} {}", progress.describe());
        }
        if machine_line {
            // One write of one line: the log reader takes whole lines only.
            let line = format!("{}\n", loadgate_results::progress::line(&progress));
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(line.as_bytes()).and_then(|()| out.flush());
        }
    }
}
