//! `loadrunner gate`: the budgets of the command line over a Locust-format `_stats.csv`, printed
//! as PASS or FAIL with each broken budget.

use loadgate_api::load::Thresholds;
use loadgate_results::gate;

/// `loadrunner gate`: thresholds over a Locust-format stats CSV.
///
/// # Errors
/// When the file is unreadable or not a Locust stats CSV.
pub fn command(args: &crate::config::GateArgs) -> Result<crate::Verdict, crate::RunError> {
    let stats = gate::read_stats_csv(&args.file).map_err(|e| crate::UsageError(e.to_string()))?;
    let violations = gate::evaluate(
        &stats,
        &Thresholds::from(args.thresholds),
        &args.file.display().to_string(),
    );
    println!(
        "{}: {} requests, {} failures ({:.2}%), {:.1} req/s, p95 {:.0} ms, p99 {:.0} ms",
        args.file.display(),
        stats.requests,
        stats.failures,
        stats.error_rate * 100.0,
        stats.rps,
        stats.p95_ms,
        stats.p99_ms
    );
    for v in &violations {
        println!("FAIL {}", v.message);
    }
    println!(
        "{}",
        if violations.is_empty() {
            "PASS"
        } else {
            "FAIL"
        }
    );
    Ok(if violations.is_empty() {
        crate::Verdict::Pass
    } else {
        crate::Verdict::Fail
    })
}
