//! The team's own texts (`spec.dataset`), read once before the load: plain lines are texts,
//! JSON lines are `{"text": …}` (a text), `{"query": …, "documents": [...]}` (a rerank case),
//! or an LLM prompt: `{"prompt": …}` or `{"messages": [{"role", "content"}]}`.
//! Bounded before it is read (1 MiB, a ConfigMap's limit); [`Dataset::stats`] estimates its
//! token lengths for the report.

use crate::UsageError;
use loadgate_api::stats::DatasetStats;
use loadgate_api::target::{MAX_DATASET_BYTES, MAX_DATASET_LINES, RunDataset};
use serde::Deserialize;

/// Texts and rerank cases to draw from.
#[derive(Debug, Clone, Default)]
pub struct Dataset {
    /// Texts for embed tasks (and rerank documents when there are no cases).
    pub texts: Vec<String>,
    /// Rerank cases: a query and its documents.
    pub cases: Vec<(String, Vec<String>)>,
    /// LLM prompts: `{"prompt": …}` and `{"messages": [...]}` lines.
    pub prompts: Vec<crate::llm_wire::Prompt>,
    /// Where it came from: `file /etc/…` or `inline`.
    pub source: String,
}

impl Dataset {
    /// Reads `spec`'s file (at most 1 MiB) or inline lines.
    ///
    /// # Errors
    /// [`UsageError`] naming the file or the line that cannot be read.
    pub fn load(spec: &RunDataset) -> Result<Self, UsageError> {
        match &spec.file {
            Some(path) => {
                let bytes = crate::target::read_bounded(path, MAX_DATASET_BYTES)
                    .map_err(|e| UsageError(format!("dataset.file {path}: {e}")))?;
                let text = String::from_utf8(bytes)
                    .map_err(|_| UsageError(format!("dataset.file {path}: not UTF-8 text")))?;
                Self::parse(text.lines(), &format!("file {path}"))
            }
            None => Self::parse(spec.inline.iter().map(String::as_str), "inline"),
        }
    }

    /// Parses lines (blank ones skipped).
    ///
    /// # Errors
    /// [`UsageError`] naming the first line that is neither text nor a known JSON shape, or a
    /// dataset with nothing to draw.
    pub fn parse<'a>(
        lines: impl Iterator<Item = &'a str>,
        source: &str,
    ) -> Result<Self, UsageError> {
        #[derive(Deserialize)]
        #[serde(untagged, deny_unknown_fields)]
        enum Line {
            Text {
                text: String,
            },
            Case {
                query: String,
                documents: Vec<String>,
            },
            Prompt {
                prompt: String,
            },
            Messages {
                messages: Vec<crate::llm_wire::Message>,
            },
        }
        let mut dataset = Dataset {
            source: source.to_owned(),
            ..Dataset::default()
        };
        for (number, line) in lines.enumerate() {
            if number >= MAX_DATASET_LINES {
                return Err(UsageError(format!(
                    "dataset ({source}): more than {MAX_DATASET_LINES} lines"
                )));
            }
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() {
                continue;
            }
            if !line.trim_start().starts_with('{') {
                dataset.texts.push(line.to_owned());
                continue;
            }
            match serde_json::from_str::<Line>(line) {
                Ok(Line::Text { text }) => dataset.texts.push(text),
                Ok(Line::Case { query, documents }) if !documents.is_empty() => {
                    dataset.cases.push((query, documents));
                }
                Ok(Line::Prompt { prompt }) => {
                    dataset.texts.push(prompt.clone());
                    dataset.prompts.push(crate::llm_wire::Prompt::Text(prompt));
                }
                Ok(Line::Messages { messages }) if !messages.is_empty() => {
                    dataset
                        .prompts
                        .push(crate::llm_wire::Prompt::Messages(messages));
                }
                _ => {
                    return Err(UsageError(format!(
                        "dataset ({source}) line {}: a JSON line must be {{\"text\": …}}, \
                         {{\"query\": …, \"documents\": [...]}} with at least one document, \
                         {{\"prompt\": …}} or {{\"messages\": [{{\"role\", \"content\"}}]}}",
                        number + 1
                    )));
                }
            }
        }
        if dataset.texts.is_empty() {
            // Embed tasks draw from the cases' queries and documents.
            dataset.texts = dataset
                .cases
                .iter()
                .flat_map(|(q, d)| std::iter::once(q).chain(d))
                .cloned()
                .collect();
        }
        if dataset.texts.is_empty() {
            // Messages-only datasets: their contents are the texts other tasks draw.
            dataset.texts = dataset
                .prompts
                .iter()
                .map(crate::llm_wire::Prompt::text)
                .collect();
        }
        if dataset.texts.is_empty() {
            return Err(UsageError(format!("dataset ({source}): no text in it")));
        }
        Ok(dataset)
    }

    /// Counts and estimated token lengths of its texts.
    pub fn stats(&self) -> DatasetStats {
        let mut tokens: Vec<u64> = self.texts.iter().map(|t| estimate_tokens(t)).collect();
        tokens.sort_unstable();
        let at = |q: f64| {
            let rank = ((q * tokens.len() as f64).ceil() as usize).clamp(1, tokens.len());
            tokens[rank - 1]
        };
        DatasetStats {
            source: self.source.clone(),
            texts: self.texts.len() as u64,
            rerank_cases: self.cases.len() as u64,
            tokens_p50: at(0.50),
            tokens_p95: at(0.95),
            tokens_max: tokens.last().copied().unwrap_or(0),
        }
    }
}

/// A WordPiece-like estimate of a text's tokens: each punctuation mark is one, each word one
/// plus one more every 8 characters past its first (long and rare words split into pieces).
/// Within about 20% of BERT's tokenizer on English prose; no vocabulary is needed.
pub fn estimate_tokens(text: &str) -> u64 {
    let mut tokens = 0u64;
    for word in text.split_whitespace() {
        let mut run = 0u64;
        for c in word.chars() {
            if c.is_alphanumeric() {
                run += 1;
            } else {
                tokens += run.div_ceil(8) + 1;
                run = 0;
            }
        }
        tokens += run.div_ceil(8);
    }
    tokens
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_texts_or_rerank_cases_and_bad_ones_are_named() {
        let d = Dataset::parse(
            [
                "plain text line",
                "",
                r#"{"text": "a json text"}"#,
                r#"{"query": "q", "documents": ["d1", "d2"]}"#,
            ]
            .into_iter(),
            "inline",
        )
        .unwrap();
        assert_eq!(d.texts, ["plain text line", "a json text"]);
        assert_eq!(
            d.cases,
            [("q".to_owned(), vec!["d1".to_owned(), "d2".to_owned()])]
        );
        let cases_only =
            Dataset::parse([r#"{"query": "q", "documents": ["d"]}"#].into_iter(), "x").unwrap();
        assert_eq!(cases_only.texts, ["q", "d"]);
        let e = Dataset::parse(["ok", r#"{"promt": "x"}"#].into_iter(), "file f")
            .unwrap_err()
            .0;
        assert!(e.contains("line 2"), "{e}");
        let prompts = Dataset::parse(
            [
                r#"{"prompt": "Say hi"}"#,
                r#"{"messages": [{"role": "system", "content": "Be brief"}, {"role": "user", "content": "Hi"}]}"#,
            ]
            .into_iter(),
            "x",
        )
        .unwrap();
        assert_eq!(prompts.prompts.len(), 2);
        assert_eq!(prompts.prompts[1].text(), "system: Be brief\nuser: Hi");
        assert_eq!(prompts.texts, ["Say hi"]);
        assert!(Dataset::parse(["", "  "].into_iter(), "x").is_err());
    }

    #[test]
    fn token_lengths_are_estimated_and_summarised() {
        assert_eq!(estimate_tokens("the cat sat."), 4);
        assert_eq!(estimate_tokens("internationalisation"), 3);
        let d = Dataset::parse(
            (1..=20)
                .map(|n| "word ".repeat(n))
                .collect::<Vec<_>>()
                .iter()
                .map(String::as_str),
            "inline",
        )
        .unwrap();
        let stats = d.stats();
        assert_eq!(
            (
                stats.texts,
                stats.tokens_p50,
                stats.tokens_p95,
                stats.tokens_max
            ),
            (20, 10, 19, 20)
        );
    }

    #[test]
    fn a_dataset_file_over_1_mib_is_refused_before_it_is_read_whole() {
        let path = std::env::temp_dir().join(format!("lr-dataset-{}", std::process::id()));
        std::fs::write(&path, "x\n".repeat(600_000)).unwrap();
        let e = Dataset::load(&RunDataset {
            file: Some(path.display().to_string()),
            inline: Vec::new(),
        })
        .unwrap_err()
        .0;
        std::fs::remove_file(&path).unwrap();
        assert!(e.contains("larger than 1024 KiB"), "{e}");
    }
}
