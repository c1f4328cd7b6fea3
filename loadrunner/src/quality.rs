//! Embedding quality under load (`quality: {sampleRate, minCosine}`): before the clock starts the
//! runner embeds a reference set of texts one at a time on the idle endpoint ([`Reference::
//! embed`]); under load, a share of the embed requests draw their texts from that set
//! ([`QualityPlan::sample`]) and their answers are compared with the reference vectors
//! ([`QualityPlan::check`]): same dimension, cosine at least `minCosine`, unit norm when the
//! reference vectors are normalised. Batching, padding and truncation bugs that only appear
//! under concurrency show here as bent vectors.

use crate::client::Connection;
use crate::rng::Rng;
use loadgate_api::load::{EmbedApi, EmbedRequest, EncodingFormat, Quality};
use loadgate_results::sample::{Check, Outcome};
use std::time::Duration;

/// Texts in the reference set (embedded one by one before the clock starts).
pub const REFERENCE_TEXTS: usize = 32;

/// How far from 1 a normalised vector's norm may be.
const NORM_TOLERANCE: f64 = 1e-3;

/// Largest response checked (a bigger body is a failed check, not parsed).
const MAX_CHECKED_BODY: usize = 16 << 20;

/// The reference set: texts and the vectors the idle endpoint gave for each alone.
#[derive(Debug, Clone)]
pub struct Reference {
    /// The texts.
    pub texts: Vec<String>,
    /// One vector per text.
    pub vectors: Vec<Vec<f32>>,
    /// True when every reference vector has unit norm: answers must too.
    pub normalised: bool,
    /// The API shape its answers (and the answers checked under load) come in, and whether
    /// their vectors are base64.
    pub shape: (EmbedApi, bool),
}

impl Reference {
    /// Embeds `texts` one at a time with `request` (its path and API shape) on `connection`.
    ///
    /// # Errors
    /// The first request that fails or whose answer is not one vector.
    pub async fn embed(
        connection: &mut Connection,
        request: &EmbedRequest,
        texts: Vec<String>,
    ) -> Result<Reference, String> {
        let path = &request.path;
        let shape = (
            request.api,
            request.encoding_format == Some(EncodingFormat::Base64),
        );
        let mut vectors = Vec::with_capacity(texts.len());
        for text in &texts {
            let body = crate::wire::embed_body(request, &[text.as_str()]);
            let (outcome, answer) = connection.send_keeping_body("POST", path, Some(body)).await;
            let answer = match (outcome, answer) {
                (Outcome::Ok { .. }, Some(answer)) => answer,
                (Outcome::Failed { reason, .. }, _) => {
                    return Err(format!("POST {path} for a reference vector: {reason}"));
                }
                _ => return Err(format!("POST {path} for a reference vector: no answer")),
            };
            let mut parsed = crate::wire::vectors(shape.0, shape.1, &answer).map_err(|why| {
                format!("POST {path} answered no embeddings for a reference text: {why}")
            })?;
            if parsed.len() != 1 || parsed[0].is_empty() {
                return Err(format!(
                    "POST {path} answered {} vectors for one reference text",
                    parsed.len()
                ));
            }
            vectors.push(parsed.swap_remove(0));
        }
        let normalised = vectors
            .iter()
            .all(|v| (norm(v) - 1.0).abs() <= NORM_TOLERANCE);
        Ok(Reference {
            texts,
            vectors,
            normalised,
            shape,
        })
    }
}

/// The quality check a run makes: what share to sample, the bar, and the reference.
#[derive(Debug, Clone)]
pub struct QualityPlan {
    /// Share of embed requests checked.
    pub sample_rate: f64,
    /// Lowest cosine a checked vector may have against its reference.
    pub min_cosine: f64,
    /// The reference set.
    pub reference: Reference,
}

impl QualityPlan {
    /// The plan for `quality` over `reference`.
    pub fn new(quality: &Quality, reference: Reference) -> Self {
        Self {
            sample_rate: quality.sample_rate,
            min_cosine: quality.min_cosine,
            reference,
        }
    }

    /// Whether the next embed request is checked; when it is, `n` reference texts to send, as
    /// indices into the reference set.
    pub fn sample(&self, rng: &mut Rng, n: u64) -> Option<Vec<usize>> {
        if self.reference.texts.is_empty() || rng.unit() >= self.sample_rate {
            return None;
        }
        let size = self.reference.texts.len() as u64;
        Some((0..n).map(|_| rng.below(size) as usize).collect())
    }

    /// Compares the answer to a request that sent reference texts `sent` with their vectors.
    pub fn check(&self, answer: &[u8], sent: &[usize]) -> Check {
        let bad = Check {
            good: false,
            worst_cosine: None,
        };
        if answer.len() > MAX_CHECKED_BODY {
            return bad;
        }
        let (api, base64) = self.reference.shape;
        let Ok(vectors) = crate::wire::vectors(api, base64, answer) else {
            return bad;
        };
        if vectors.len() != sent.len() {
            return bad;
        }
        let mut good = true;
        let mut worst: Option<f64> = None;
        for (vector, &index) in vectors.iter().zip(sent) {
            let reference = &self.reference.vectors[index];
            if vector.len() != reference.len() {
                good = false;
                continue;
            }
            let cosine = cosine(vector, reference);
            worst = Some(worst.map_or(cosine, |w| w.min(cosine)));
            let norm_ok =
                !self.reference.normalised || (norm(vector) - 1.0).abs() <= NORM_TOLERANCE;
            // NaN fails too: it is not at or above the bar.
            let above = cosine
                .partial_cmp(&self.min_cosine)
                .is_some_and(|o| o.is_ge());
            if !above || !norm_ok {
                good = false;
            }
        }
        Check {
            good,
            worst_cosine: worst,
        }
    }
}

fn norm(v: &[f32]) -> f64 {
    v.iter()
        .map(|&x| f64::from(x) * f64::from(x))
        .sum::<f64>()
        .sqrt()
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| f64::from(x) * f64::from(y))
        .sum();
    let norms = norm(a) * norm(b);
    if norms == 0.0 { 0.0 } else { dot / norms }
}

/// The reference texts of a run: the first [`REFERENCE_TEXTS`] of its dataset, else of its
/// corpus.
pub fn reference_texts(
    corpus: &crate::corpus::Corpus,
    dataset: Option<&crate::dataset::Dataset>,
) -> Vec<String> {
    match dataset {
        Some(d) => d.texts.iter().take(REFERENCE_TEXTS).cloned().collect(),
        None => corpus.first(REFERENCE_TEXTS),
    }
}

/// How long the reference set may take to embed, at most.
pub const REFERENCE_TIMEOUT: Duration = Duration::from_secs(120);

#[cfg(test)]
mod tests {
    use super::*;
    use loadgate_results::sample::Tally;

    fn plan(vectors: Vec<Vec<f32>>) -> QualityPlan {
        QualityPlan {
            sample_rate: 1.0,
            min_cosine: 0.9999,
            reference: Reference {
                texts: vectors.iter().map(|_| "t".to_owned()).collect(),
                normalised: true,
                vectors,
                shape: (EmbedApi::Tutorial, false),
            },
        }
    }

    #[test]
    fn answers_are_checked_on_cosine_dimension_norm_and_count() {
        let plan = plan(vec![vec![1.0, 0.0, 0.0], vec![0.0, 1.0, 0.0]]);
        let same = br#"{"embeddings":[[0.0,1.0,0.0],[1.0,0.0,0.0]]}"#;
        assert_eq!(
            plan.check(same, &[1, 0]),
            Check {
                good: true,
                worst_cosine: Some(1.0)
            }
        );
        // TEI's bare array reads too.
        assert!(plan.check(b"[[1.0,0.0,0.0]]", &[0]).good);
        // Bent: cosine 0.8.
        let bent = plan.check(br#"{"embeddings":[[0.8,0.6,0.0]]}"#, &[0]);
        assert!(!bent.good && (bent.worst_cosine.unwrap() - 0.8).abs() < 1e-6);
        // Right direction, not unit norm while the reference is.
        assert!(!plan.check(br#"{"embeddings":[[2.0,0.0,0.0]]}"#, &[0]).good);
        // Wrong dimension, wrong count, not JSON.
        assert!(!plan.check(br#"{"embeddings":[[1.0,0.0]]}"#, &[0]).good);
        assert!(!plan.check(br#"{"embeddings":[]}"#, &[0]).good);
        assert!(!plan.check(b"oops", &[0]).good);
    }

    #[test]
    fn a_tally_keeps_counts_and_the_worst_cosine() {
        let mut tally = Tally::default();
        for (good, c) in [(true, 1.0), (false, 0.97), (true, 0.99995)] {
            tally.add(&Check {
                good,
                worst_cosine: Some(c),
            });
        }
        assert_eq!(
            (tally.sampled, tally.bad, tally.worst_cosine),
            (3, 1, Some(0.97))
        );
    }

    #[test]
    fn a_share_of_requests_is_sampled_from_the_reference_set() {
        let mut plan = plan(vec![vec![1.0]; 4]);
        plan.sample_rate = 0.25;
        let mut rng = Rng::new(7);
        let picks: Vec<Vec<usize>> = (0..4000).filter_map(|_| plan.sample(&mut rng, 3)).collect();
        assert!((800..1200).contains(&picks.len()), "{}", picks.len());
        assert!(
            picks
                .iter()
                .all(|p| p.len() == 3 && p.iter().all(|&i| i < 4))
        );
    }
}
