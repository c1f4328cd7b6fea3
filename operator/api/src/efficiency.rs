//! What a profile's throughput costs: embeddings per second (texts embedded by successful
//! requests) and LLM output tokens per second, per CPU core of the endpoint, and, given prices
//! ([`Pricing`]), per 1,000 embeddings and per million output tokens. The endpoint's size ([`TargetResources`]) comes from its pods' CPU and memory
//! limits (else requests) times its replicas; [`cpu_cores`] and [`memory_gib`] read the
//! Kubernetes quantities ("500m", "2", "512Mi", "1G").

use serde::{Deserialize, Serialize};

/// Prices of the endpoint's resources.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Pricing {
    /// Price of one CPU core for one hour (any currency, e.g. 0.04).
    #[cfg_attr(feature = "crd", schemars(range(min = 0)))]
    pub cpu_core_hour: f64,
    /// Price of one GiB of memory for one hour; memory is free when unset.
    #[serde(
        default,
        rename = "memoryGiBHour",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "crd", schemars(range(min = 0)))]
    pub memory_gib_hour: Option<f64>,
}

/// What the target runs on, all replicas together.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct TargetResources {
    /// CPU cores: each pod's limit (else request) times the replicas.
    pub cpu_cores: f64,
    /// Memory, GiB, the same way; absent when the pods set none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_gib: Option<f64>,
}

/// One profile's efficiency.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct Efficiency {
    /// Texts embedded by successful requests, per second (0, and left out, without embeddings).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub embeddings_per_second: f64,
    /// The same per CPU core of the endpoint (absent without `targetResources`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embeddings_per_core_second: Option<f64>,
    /// With `spec.pricing`: what 1,000 embeddings cost at this throughput.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_per_1k_embeddings: Option<f64>,
    /// LLM tasks: output tokens per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_tokens_per_second: Option<f64>,
    /// LLM tasks: output tokens per second per CPU core of the endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_tokens_per_core_second: Option<f64>,
    /// LLM tasks, with `spec.pricing`: what a million output tokens cost at this throughput.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_per_1m_output_tokens: Option<f64>,
}

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

impl Efficiency {
    /// From `embeddings` embedded and `output_tokens` generated in `seconds`, on `resources`,
    /// at `pricing`. `None` when the profile produced neither (or every request failed).
    pub fn of(
        embeddings: u64,
        output_tokens: u64,
        seconds: f64,
        resources: Option<&TargetResources>,
        pricing: Option<&Pricing>,
    ) -> Option<Efficiency> {
        if (embeddings == 0 && output_tokens == 0) || !(seconds.is_finite() && seconds > 0.0) {
            return None;
        }
        let cores = resources.map(|r| r.cpu_cores).filter(|c| *c > 0.0);
        let per_hour = match (resources, pricing) {
            (Some(r), Some(p)) => Some(
                r.cpu_cores * p.cpu_core_hour
                    + r.memory_gib.unwrap_or(0.0) * p.memory_gib_hour.unwrap_or(0.0),
            ),
            _ => None,
        };
        // What `per` units cost at `rate` a second.
        let cost = |rate: f64, per: f64| per_hour.map(|h| h / 3600.0 / rate * per);
        let per_second = embeddings as f64 / seconds;
        let tokens = (output_tokens > 0).then(|| output_tokens as f64 / seconds);
        Some(Efficiency {
            embeddings_per_second: per_second,
            embeddings_per_core_second: cores.filter(|_| embeddings > 0).map(|c| per_second / c),
            cost_per_1k_embeddings: (embeddings > 0).then(|| cost(per_second, 1000.0)).flatten(),
            output_tokens_per_second: tokens,
            output_tokens_per_core_second: tokens.zip(cores).map(|(t, c)| t / c),
            cost_per_1m_output_tokens: tokens.and_then(|t| cost(t, 1e6)),
        })
    }

    /// "412.3 embeddings/s, 206.2 per core-second, 0.000054 per 1k embeddings", and for LLM
    /// tasks "310.0 output tokens/s, 155.0 per core-second, 0.0717 per 1M output tokens".
    pub fn sentence(&self) -> String {
        let mut parts = Vec::new();
        if self.embeddings_per_second > 0.0 {
            let mut s = format!("{:.1} embeddings/s", self.embeddings_per_second);
            if let Some(per_core) = self.embeddings_per_core_second {
                s.push_str(&format!(", {per_core:.1} per core-second"));
            }
            if let Some(cost) = self.cost_per_1k_embeddings {
                s.push_str(&format!(", {} per 1k embeddings", significant(cost)));
            }
            parts.push(s);
        }
        if let Some(tokens) = self.output_tokens_per_second {
            let mut s = format!("{tokens:.1} output tokens/s");
            if let Some(per_core) = self.output_tokens_per_core_second {
                s.push_str(&format!(", {per_core:.1} per core-second"));
            }
            if let Some(cost) = self.cost_per_1m_output_tokens {
                s.push_str(&format!(", {} per 1M output tokens", significant(cost)));
            }
            parts.push(s);
        }
        parts.join("; ")
    }
}

/// A price with 3 significant digits, however small ("0.0000540").
fn significant(v: f64) -> String {
    if v <= 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    let decimals = (2 - v.log10().floor() as i32).max(0) as usize;
    format!("{v:.decimals$}")
}

/// CPU cores of a Kubernetes quantity: "2" → 2, "500m" → 0.5, "1.5" → 1.5.
pub fn cpu_cores(quantity: &str) -> Option<f64> {
    let q = quantity.trim();
    let value = match q.strip_suffix('m') {
        Some(milli) => milli.parse::<f64>().ok()? / 1000.0,
        None => q.parse::<f64>().ok()?,
    };
    (value.is_finite() && value >= 0.0).then_some(value)
}

/// GiB of a Kubernetes memory quantity: "512Mi" → 0.5, "1G" → 0.93, "1073741824" → 1.
pub fn memory_gib(quantity: &str) -> Option<f64> {
    let q = quantity.trim();
    const UNITS: [(&str, f64); 12] = [
        ("Ki", 1024.0),
        ("Mi", 1048576.0),
        ("Gi", 1073741824.0),
        ("Ti", 1099511627776.0),
        ("Pi", 1125899906842624.0),
        ("Ei", 1152921504606846976.0),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
        ("E", 1e18),
    ];
    let (number, scale) = UNITS
        .iter()
        .find_map(|(unit, scale)| q.strip_suffix(unit).map(|n| (n, *scale)))
        .unwrap_or((q, 1.0));
    let bytes = number.parse::<f64>().ok()? * scale;
    (bytes.is_finite() && bytes >= 0.0).then_some(bytes / 1073741824.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_read_as_kubernetes_writes_them() {
        assert_eq!(cpu_cores("2"), Some(2.0));
        assert_eq!(cpu_cores("500m"), Some(0.5));
        assert_eq!(cpu_cores("lots"), None);
        assert_eq!(memory_gib("512Mi"), Some(0.5));
        assert_eq!(memory_gib("2Gi"), Some(2.0));
        assert!((memory_gib("1G").unwrap() - 0.931).abs() < 0.001);
        assert_eq!(memory_gib("1073741824"), Some(1.0));
    }

    #[test]
    fn cost_per_thousand_comes_from_the_cores_and_the_rate() {
        // 2 cores at 0.036/h and 1 GiB at 0.0036/h: 0.0756/h = 0.000021/s; at 100
        // embeddings/s, 1,000 embeddings take 10 s: 0.00021.
        let resources = TargetResources {
            cpu_cores: 2.0,
            memory_gib: Some(1.0),
        };
        let pricing = Pricing {
            cpu_core_hour: 0.036,
            memory_gib_hour: Some(0.0036),
        };
        let e = Efficiency::of(1000, 0, 10.0, Some(&resources), Some(&pricing)).unwrap();
        assert_eq!(e.embeddings_per_second, 100.0);
        assert_eq!(e.embeddings_per_core_second, Some(50.0));
        assert!((e.cost_per_1k_embeddings.unwrap() - 0.00021).abs() < 1e-12);
        assert_eq!(
            e.sentence(),
            "100.0 embeddings/s, 50.0 per core-second, 0.000210 per 1k embeddings"
        );
        assert!(Efficiency::of(0, 0, 10.0, None, None).is_none());
        let bare = Efficiency::of(50, 0, 10.0, None, Some(&pricing)).unwrap();
        assert_eq!(
            (bare.embeddings_per_core_second, bare.cost_per_1k_embeddings),
            (None, None)
        );
        // An LLM at 210 output tokens/s on the same 0.0756/h: a million tokens take 4762 s,
        // 0.1 of the hourly price.
        let llm = Efficiency::of(0, 2100, 10.0, Some(&resources), Some(&pricing)).unwrap();
        assert_eq!(
            (
                llm.output_tokens_per_second,
                llm.output_tokens_per_core_second
            ),
            (Some(210.0), Some(105.0))
        );
        assert!((llm.cost_per_1m_output_tokens.unwrap() - 0.1).abs() < 1e-12);
        assert_eq!(
            llm.sentence(),
            "210.0 output tokens/s, 105.0 per core-second, 0.100 per 1M output tokens"
        );
        assert_eq!(llm.cost_per_1k_embeddings, None);
    }
}
