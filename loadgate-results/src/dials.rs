//! The connections a run opened ([`DialTally`]): how many, the protocol each spoke, and HDR
//! histograms of their connect and TLS handshake times, summarised as [`ConnectionStats`] and
//! merged exactly across runner pods ([`merge`]).

use crate::codec;
use crate::codec::MAX_MICROS;
use crate::sample::{Dial, Protocol};
use hdrhistogram::Histogram;
use loadgate_api::stats::ConnectionStats;
use std::collections::BTreeSet;

/// Connections opened so far.
#[derive(Debug, Clone, Default)]
pub struct DialTally {
    opened: u64,
    protocols: BTreeSet<Protocol>,
    connect: Option<Histogram<u64>>,
    tls: Option<Histogram<u64>>,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_MICROS, 3)
        .expect("static histogram bounds are valid; this is a bug")
}

fn micros(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_micros())
        .unwrap_or(u64::MAX)
        .clamp(1, MAX_MICROS)
}

impl DialTally {
    /// Adds one opening.
    pub fn add(&mut self, dial: &Dial) {
        self.opened += 1;
        self.protocols.insert(dial.protocol);
        self.connect
            .get_or_insert_with(histogram)
            .saturating_record(micros(dial.connect));
        if let Some(tls) = dial.tls {
            self.tls
                .get_or_insert_with(histogram)
                .saturating_record(micros(tls));
        }
    }

    /// The summary, `None` when no connection was opened.
    pub fn summary(&self) -> Option<ConnectionStats> {
        let connect = self.connect.as_ref()?;
        let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        Some(ConnectionStats {
            protocol: protocols(self.protocols.iter().map(|p| p.name())),
            opened: self.opened,
            connect_p50_ms: ms(connect, 0.50),
            connect_p95_ms: ms(connect, 0.95),
            tls_p50_ms: self.tls.as_ref().map(|h| ms(h, 0.50)),
            tls_p95_ms: self.tls.as_ref().map(|h| ms(h, 0.95)),
            connect_histogram: Some(codec::encode(connect)),
            tls_histogram: self.tls.as_ref().map(codec::encode),
        })
    }
}

/// `HTTP/1.1`, `HTTP/2`, or `HTTP/1.1, HTTP/2`.
fn protocols<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let names: BTreeSet<&str> = names.flat_map(|n| n.split(", ")).collect();
    names.into_iter().collect::<Vec<_>>().join(", ")
}

/// Several runners' connections as one: counts added, histograms merged (exact percentiles).
/// A part whose histogram is missing or unreadable leaves its percentiles out of the merge
/// (the larger p95 of the parts then stands in: never an average of percentiles).
pub fn merge<'a>(parts: impl Iterator<Item = &'a ConnectionStats>) -> Option<ConnectionStats> {
    let parts: Vec<&ConnectionStats> = parts.collect();
    let first = parts.first()?;
    let exact = |pick: fn(&ConnectionStats) -> Option<&String>| -> Option<Histogram<u64>> {
        let mut merged = histogram();
        for part in &parts {
            let h = codec::decode(pick(part)?).ok()?;
            merged.add(&h).ok()?;
        }
        (!merged.is_empty()).then_some(merged)
    };
    let worst = |pick: fn(&ConnectionStats) -> Option<f64>| {
        parts.iter().filter_map(|p| pick(p)).reduce(f64::max)
    };
    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let connect = exact(|p| p.connect_histogram.as_ref());
    let tls = exact(|p| p.tls_histogram.as_ref());
    Some(ConnectionStats {
        protocol: protocols(parts.iter().map(|p| p.protocol.as_str())),
        opened: parts.iter().map(|p| p.opened).sum(),
        connect_p50_ms: connect
            .as_ref()
            .map_or(first.connect_p50_ms, |h| ms(h, 0.50)),
        connect_p95_ms: connect.as_ref().map_or_else(
            || worst(|p| Some(p.connect_p95_ms)).unwrap_or(0.0),
            |h| ms(h, 0.95),
        ),
        tls_p50_ms: tls
            .as_ref()
            .map(|h| ms(h, 0.50))
            .or_else(|| worst(|p| p.tls_p50_ms)),
        tls_p95_ms: tls
            .as_ref()
            .map(|h| ms(h, 0.95))
            .or_else(|| worst(|p| p.tls_p95_ms)),
        connect_histogram: connect.as_ref().map(codec::encode),
        tls_histogram: tls.as_ref().map(codec::encode),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn dial(connect_ms: u64, tls_ms: Option<u64>, protocol: Protocol) -> Dial {
        Dial {
            connect: Duration::from_millis(connect_ms),
            tls: tls_ms.map(Duration::from_millis),
            protocol,
        }
    }

    #[test]
    fn openings_are_counted_by_protocol_and_merge_exactly() {
        let mut a = DialTally::default();
        for ms in 1..=10 {
            a.add(&dial(ms, Some(10 * ms), Protocol::Http2));
        }
        let mut b = DialTally::default();
        for ms in 91..=100 {
            b.add(&dial(ms, Some(10 * ms), Protocol::Http1));
        }
        let (a, b) = (a.summary().unwrap(), b.summary().unwrap());
        assert_eq!((a.protocol.as_str(), a.opened), ("HTTP/2", 10));
        assert!((a.connect_p50_ms - 5.0).abs() < 0.01, "{a:?}");
        let merged = merge([&a, &b].into_iter()).unwrap();
        assert_eq!(merged.protocol, "HTTP/1.1, HTTP/2");
        assert_eq!(merged.opened, 20);
        // Exact: the 10th of 20 values is 10 ms, the 19th is 99 ms.
        assert!((merged.connect_p50_ms - 10.0).abs() < 0.01, "{merged:?}");
        assert!((merged.connect_p95_ms - 99.0).abs() < 0.1, "{merged:?}");
        assert!(
            (merged.tls_p95_ms.unwrap() - 990.0).abs() < 1.0,
            "{merged:?}"
        );
        assert!(DialTally::default().summary().is_none());
    }
}
