//! The built-in text corpus embed tasks draw from: sentences on varied topics, combined into
//! texts from a few words to a few paragraphs, so token counts vary as real traffic does.

use crate::rng::Rng;

const SENTENCES: &[&str] = &[
    "How do I reset my password?",
    "The deployment rolled out to three regions without errors.",
    "Kubernetes restarts containers that fail their liveness probe.",
    "What is the refund policy for annual subscriptions?",
    "Latency percentiles tell you more than averages ever will.",
    "The quarterly report shows revenue up twelve percent year over year.",
    "Add two cups of flour and stir until the batter is smooth.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "A canary release sends a small share of traffic to the new version first.",
    "Please summarise the attached contract in plain language.",
    "The museum opens at nine and closes at six on weekdays.",
    "Vector search finds documents whose embeddings lie close to the query's.",
    "Our SLO is 99.9 percent of requests under 500 milliseconds.",
    "The patient reported mild headaches after the second dose.",
    "Machine translation quality improved sharply with transformer models.",
    "Is the north-facing apartment still available next month?",
    "Backpressure keeps a saturated service from collapsing under its own queue.",
    "The river flooded the lower town twice in the last decade.",
    "Compile times dropped after we split the crate into smaller units.",
    "Which running shoes are best for flat feet and long distances?",
    "Rate limiting protects shared infrastructure from noisy neighbours.",
    "The orchestra rehearsed the second movement until midnight.",
    "Error budgets turn reliability targets into engineering decisions.",
    "Café owners in Zürich reported a busy summer season.",
    "Tokyo's trains are famous for punctuality — 東京の電車は時間に正確です。",
    "Drought conditions pushed grain prices to a five-year high.",
    "Can you recommend a thriller novel set in Scandinavia?",
    "The API returns 429 with a Retry-After header when it is overloaded.",
    "Solar panels on the warehouse roof now cover most daytime demand.",
    "The support ticket was escalated after three failed attempts to log in.",
];

/// Texts of varied length drawn from [`SENTENCES`].
#[derive(Debug, Clone)]
pub struct Corpus {
    texts: Vec<String>,
}

impl Corpus {
    /// A corpus of `size` texts built from the seed: each text is one to eight sentences, with
    /// short texts most frequent (half are a single sentence).
    pub fn new(seed: u64, size: usize) -> Self {
        let mut rng = Rng::new(seed ^ 0xC0FF_EE00_D15E_A5E5);
        let texts = (0..size.max(1))
            .map(|_| {
                let sentences = match rng.below(10) {
                    0..=4 => 1,
                    5..=7 => rng.range_inclusive(2, 3),
                    _ => rng.range_inclusive(4, 8),
                };
                (0..sentences)
                    .map(|_| SENTENCES[rng.below(SENTENCES.len() as u64) as usize])
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        Self { texts }
    }

    /// The first `n` texts (fewer when the corpus is smaller).
    pub fn first(&self, n: usize) -> Vec<String> {
        self.texts.iter().take(n).cloned().collect()
    }

    /// A random text.
    pub fn pick<'a>(&'a self, rng: &mut Rng) -> &'a str {
        &self.texts[rng.below(self.texts.len() as u64) as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_vary_and_seed_reproduces() {
        let corpus = Corpus::new(1, 500);
        let lens: Vec<usize> = corpus
            .texts
            .iter()
            .map(|t| t.split_whitespace().count())
            .collect();
        assert!(
            lens.iter().min().unwrap() <= &6 && lens.iter().max().unwrap() >= &40,
            "{lens:?}"
        );
        assert_eq!(Corpus::new(1, 10).texts, Corpus::new(1, 10).texts);
        assert_ne!(Corpus::new(1, 10).texts, Corpus::new(2, 10).texts);
    }
}
