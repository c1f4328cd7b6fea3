//! The wire shapes of embedding and rerank APIs: the body each task sends ([`embed_body`],
//! [`rerank_body`]) and the check every answer must pass ([`Expect::check`]): an embed answer
//! holds one vector per text sent (of the asked dimension, base64 ones decoded), a rerank answer
//! scores every document (or `topN` of them) with in-range indices. A 200 with another body is
//! a failure with reason `bad response: …`.
//!
//! | api | request | answer |
//! | --- | --- | --- |
//! | embed `tutorial` | `{"texts": [...]}` | `{"embeddings": [[...]]}` (or TEI's bare `[[...]]`) |
//! | embed `tei` | `{"inputs": [...]}` | `[[...]]` |
//! | embed `openai` | `{"input": [...], "model", "dimensions"?, "encoding_format"?}` | `{"data": [{"embedding", "index"}]}` |
//! | rerank `tei` | `{"query", "texts"}` | `[{"index", "score"}]` |
//! | rerank `cohere` / `jina` | `{"model"?, "query", "documents", "top_n"?}` | `{"results": [{"index", "relevance_score"}]}` |

use base64::Engine as _;
use bytes::Bytes;
use loadgate_api::load::{EmbedApi, EmbedRequest, EncodingFormat, RerankApi, RerankRequest};
use serde::Deserialize;
use serde_json::json;

/// The body of an embed request of `texts` in `request`'s API shape.
pub fn embed_body(request: &EmbedRequest, texts: &[&str]) -> Bytes {
    let body = match request.api {
        EmbedApi::Tutorial => json!({ "texts": texts }),
        EmbedApi::Tei => {
            let mut body = json!({ "inputs": texts });
            if let Some(d) = request.dimensions {
                body["dimensions"] = json!(d);
            }
            body
        }
        EmbedApi::Openai => {
            let mut body = json!({ "input": texts, "model": request.model });
            if let Some(d) = request.dimensions {
                body["dimensions"] = json!(d);
            }
            if let Some(format) = request.encoding_format {
                body["encoding_format"] = json!(match format {
                    EncodingFormat::Float => "float",
                    EncodingFormat::Base64 => "base64",
                });
            }
            body
        }
    };
    Bytes::from(serde_json::to_vec(&body).expect("JSON of strings serialises; this is a bug"))
}

/// The body of a rerank request of `query` over `documents` in `request`'s API shape.
pub fn rerank_body(request: &RerankRequest, query: &str, documents: &[&str]) -> Bytes {
    let body = match request.api {
        RerankApi::Tei => json!({ "query": query, "texts": documents }),
        RerankApi::Cohere | RerankApi::Jina => {
            let mut body = json!({ "query": query, "documents": documents });
            if let Some(model) = &request.model {
                body["model"] = json!(model);
            }
            if let Some(n) = request.top_n {
                body["top_n"] = json!(n);
            }
            body
        }
    };
    Bytes::from(serde_json::to_vec(&body).expect("JSON of strings serialises; this is a bug"))
}

/// What a request's answer must hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Anything (get, post): the status decides.
    Any,
    /// One vector per text sent.
    Embeddings {
        /// The API shape.
        api: EmbedApi,
        /// Base64 vectors (OpenAI's `encoding_format: base64`).
        base64: bool,
        /// Texts sent.
        count: u32,
        /// The dimension asked for, when one was.
        dimensions: Option<u32>,
    },
    /// A score for each of `documents` (or the best `top_n`).
    Scores {
        /// The API shape.
        api: RerankApi,
        /// Documents sent.
        documents: u32,
        /// `topN` asked.
        top_n: Option<u32>,
    },
}

impl Expect {
    /// What an embed request of `count` texts expects.
    pub fn embeddings(request: &EmbedRequest, count: u32) -> Self {
        Expect::Embeddings {
            api: request.api,
            base64: request.encoding_format == Some(EncodingFormat::Base64),
            count,
            dimensions: request.dimensions,
        }
    }

    /// Checks a successful answer's body; `Err` is the failure reason (`bad response: …`).
    pub fn check(&self, answer: &[u8]) -> Result<(), String> {
        let bad = |why: String| Err(format!("bad response: {why}"));
        match *self {
            Expect::Any => Ok(()),
            Expect::Embeddings {
                api,
                base64,
                count,
                dimensions,
            } => {
                let vectors = match vectors(api, base64, answer) {
                    Ok(v) => v,
                    Err(why) => return bad(why),
                };
                if vectors.len() != count as usize {
                    return bad(format!("{} vectors for {count} texts", vectors.len()));
                }
                let dims: Vec<usize> = vectors.iter().map(Vec::len).collect();
                if let Some(want) = dimensions
                    && let Some(got) = dims.iter().find(|&&d| d != want as usize)
                {
                    return bad(format!("a vector of {got} dimensions, {want} asked"));
                }
                if dims.contains(&0) || dims.windows(2).any(|w| w[0] != w[1]) {
                    return bad("vectors of different or zero dimensions".to_owned());
                }
                if vectors.iter().flatten().any(|x| !x.is_finite()) {
                    return bad("a vector holds a value that is not a finite number".to_owned());
                }
                Ok(())
            }
            Expect::Scores {
                api,
                documents,
                top_n,
            } => {
                let scores = match scores(api, answer) {
                    Ok(s) => s,
                    Err(why) => return bad(why),
                };
                let want = top_n.map_or(documents, |n| n.min(documents)) as usize;
                if scores.len() != want {
                    return bad(format!(
                        "{} scores for {documents} documents{}",
                        scores.len(),
                        top_n.map_or(String::new(), |n| format!(" (topN {n})"))
                    ));
                }
                let mut seen = vec![false; documents as usize];
                for (index, score) in scores {
                    let Some(slot) = seen.get_mut(index) else {
                        return bad(format!("index {index} of {documents} documents"));
                    };
                    if std::mem::replace(slot, true) {
                        return bad(format!("document {index} scored twice"));
                    }
                    if !score.is_finite() {
                        return bad(format!("the score of document {index} is not a number"));
                    }
                }
                Ok(())
            }
        }
    }
}

/// The vectors of an embed answer in `api`'s shape (base64 ones decoded); `Err` says why the
/// body is not one.
pub fn vectors(api: EmbedApi, base64: bool, answer: &[u8]) -> Result<Vec<Vec<f32>>, String> {
    match api {
        EmbedApi::Tutorial | EmbedApi::Tei => {
            #[derive(Deserialize)]
            struct Wrapped {
                embeddings: Vec<Vec<f32>>,
            }
            serde_json::from_slice::<Wrapped>(answer)
                .map(|w| w.embeddings)
                .or_else(|_| serde_json::from_slice::<Vec<Vec<f32>>>(answer))
                .map_err(|_| not_shaped(answer, "{\"embeddings\": [[...]]} or [[...]]"))
        }
        EmbedApi::Openai => {
            #[derive(Deserialize)]
            #[serde(untagged)]
            enum Vector {
                Floats(Vec<f32>),
                Base64(String),
            }
            #[derive(Deserialize)]
            struct Item {
                embedding: Vector,
                index: Option<usize>,
            }
            #[derive(Deserialize)]
            struct List {
                data: Vec<Item>,
            }
            let list = serde_json::from_slice::<List>(answer)
                .map_err(|_| not_shaped(answer, "{\"data\": [{\"embedding\"}]}"))?;
            let mut out = vec![None; list.data.len()];
            for (position, item) in list.data.into_iter().enumerate() {
                let index = item.index.unwrap_or(position);
                let vector = match (item.embedding, base64) {
                    (Vector::Floats(v), false) => v,
                    (Vector::Base64(text), true) => decode_base64_floats(&text)?,
                    (Vector::Floats(_), true) => {
                        return Err("float vectors where base64 was asked".to_owned());
                    }
                    (Vector::Base64(_), false) => {
                        return Err("base64 vectors where floats were asked".to_owned());
                    }
                };
                match out.get_mut(index) {
                    Some(slot @ None) => *slot = Some(vector),
                    _ => return Err(format!("data index {index} out of range or repeated")),
                }
            }
            Ok(out.into_iter().flatten().collect())
        }
    }
}

/// Little-endian f32s from base64 (OpenAI's `encoding_format: base64`).
fn decode_base64_floats(text: &str) -> Result<Vec<f32>, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|_| "an embedding that is not base64".to_owned())?;
    if !bytes.len().is_multiple_of(4) {
        return Err(format!(
            "a base64 embedding of {} bytes, not whole f32s",
            bytes.len()
        ));
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

/// (index, score) of each document a rerank answer scores.
fn scores(api: RerankApi, answer: &[u8]) -> Result<Vec<(usize, f64)>, String> {
    match api {
        RerankApi::Tei => {
            #[derive(Deserialize)]
            struct Rank {
                index: usize,
                score: f64,
            }
            serde_json::from_slice::<Vec<Rank>>(answer)
                .map(|r| r.into_iter().map(|r| (r.index, r.score)).collect())
                .map_err(|_| not_shaped(answer, "[{\"index\", \"score\"}]"))
        }
        RerankApi::Cohere | RerankApi::Jina => {
            #[derive(Deserialize)]
            struct Rank {
                index: usize,
                relevance_score: f64,
            }
            #[derive(Deserialize)]
            struct Ranked {
                results: Vec<Rank>,
            }
            serde_json::from_slice::<Ranked>(answer)
                .map(|r| {
                    r.results
                        .into_iter()
                        .map(|r| (r.index, r.relevance_score))
                        .collect()
                })
                .map_err(|_| {
                    not_shaped(answer, "{\"results\": [{\"index\", \"relevance_score\"}]}")
                })
        }
    }
}

/// "not {shape}: {the body's first 60 characters}".
fn not_shaped(answer: &[u8], shape: &str) -> String {
    let text = String::from_utf8_lossy(&answer[..answer.len().min(60)]);
    let text: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    format!("not {shape}: {text}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use loadgate_api::load::TaskRequest;

    fn embed(api: EmbedApi) -> EmbedRequest {
        let TaskRequest::Embed(mut e) = TaskRequest::embed("/embed", 1, 4) else {
            unreachable!()
        };
        e.api = api;
        e.model = Some("m".into());
        e
    }

    #[test]
    fn embed_bodies_take_each_apis_shape() {
        let body = |r: &EmbedRequest| -> serde_json::Value {
            serde_json::from_slice(&embed_body(r, &["a", "b"])).unwrap()
        };
        assert_eq!(
            body(&embed(EmbedApi::Tutorial)),
            json!({"texts": ["a", "b"]})
        );
        assert_eq!(body(&embed(EmbedApi::Tei)), json!({"inputs": ["a", "b"]}));
        let mut openai = embed(EmbedApi::Openai);
        openai.dimensions = Some(8);
        openai.encoding_format = Some(EncodingFormat::Base64);
        assert_eq!(
            body(&openai),
            json!({"input": ["a", "b"], "model": "m", "dimensions": 8, "encoding_format": "base64"})
        );
    }

    #[test]
    fn embed_answers_must_hold_one_vector_per_text() {
        let expect = |api, base64, count| Expect::Embeddings {
            api,
            base64,
            count,
            dimensions: None,
        };
        let tutorial = expect(EmbedApi::Tutorial, false, 2);
        assert_eq!(tutorial.check(br#"{"embeddings":[[1,0],[0,1]]}"#), Ok(()));
        assert_eq!(
            tutorial.check(br#"{"embeddings":[[1,0]]}"#).unwrap_err(),
            "bad response: 1 vectors for 2 texts"
        );
        assert!(
            tutorial
                .check(br#"{"error":"overloaded"}"#)
                .unwrap_err()
                .starts_with("bad response: not {\"embeddings\"")
        );
        assert!(tutorial.check(br#"{"embeddings":[[1,0],[0]]}"#).is_err());
        assert_eq!(
            expect(EmbedApi::Tei, false, 1).check(b"[[0.5,0.5]]"),
            Ok(())
        );
        let openai = expect(EmbedApi::Openai, false, 2);
        assert_eq!(
            openai.check(
                br#"{"data":[{"embedding":[1,0],"index":1},{"embedding":[0,1],"index":0}]}"#
            ),
            Ok(())
        );
        assert!(
            openai
                .check(br#"{"data":[{"embedding":[1,0],"index":0},{"embedding":[0,1],"index":0}]}"#)
                .is_err()
        );
        let floats: Vec<u8> = [1.0f32, -2.5]
            .iter()
            .flat_map(|f| f.to_le_bytes())
            .collect();
        let b64 = base64::engine::general_purpose::STANDARD.encode(floats);
        let answer = format!(r#"{{"data":[{{"embedding":"{b64}","index":0}}]}}"#);
        assert_eq!(
            vectors(EmbedApi::Openai, true, answer.as_bytes()).unwrap(),
            vec![vec![1.0, -2.5]]
        );
        assert_eq!(
            expect(EmbedApi::Openai, true, 1).check(answer.as_bytes()),
            Ok(())
        );
        assert!(
            expect(EmbedApi::Openai, true, 1)
                .check(br#"{"data":[{"embedding":"!!","index":0}]}"#)
                .unwrap_err()
                .contains("not base64")
        );
        let sized = Expect::Embeddings {
            api: EmbedApi::Tei,
            base64: false,
            count: 1,
            dimensions: Some(3),
        };
        assert!(
            sized
                .check(b"[[1,2]]")
                .unwrap_err()
                .contains("2 dimensions, 3 asked")
        );
    }

    #[test]
    fn rerank_bodies_and_answers_take_each_apis_shape() {
        let request = RerankRequest {
            path: "/rerank".into(),
            api: RerankApi::Cohere,
            model: Some("rr".into()),
            min_documents: 1,
            max_documents: 3,
            top_n: Some(2),
        };
        let body: serde_json::Value =
            serde_json::from_slice(&rerank_body(&request, "q", &["a", "b", "c"])).unwrap();
        assert_eq!(
            body,
            json!({"model": "rr", "query": "q", "documents": ["a", "b", "c"], "top_n": 2})
        );
        let tei = RerankRequest {
            api: RerankApi::Tei,
            ..request.clone()
        };
        let body: serde_json::Value =
            serde_json::from_slice(&rerank_body(&tei, "q", &["a"])).unwrap();
        assert_eq!(body, json!({"query": "q", "texts": ["a"]}));

        let cohere = Expect::Scores {
            api: RerankApi::Cohere,
            documents: 3,
            top_n: Some(2),
        };
        assert_eq!(
            cohere.check(br#"{"results":[{"index":2,"relevance_score":0.9},{"index":0,"relevance_score":0.1}]}"#),
            Ok(())
        );
        assert!(
            cohere
                .check(br#"{"results":[{"index":2,"relevance_score":0.9}]}"#)
                .unwrap_err()
                .contains("1 scores for 3 documents (topN 2)")
        );
        let tei = Expect::Scores {
            api: RerankApi::Tei,
            documents: 2,
            top_n: None,
        };
        assert_eq!(
            tei.check(br#"[{"index":1,"score":0.7},{"index":0,"score":0.2}]"#),
            Ok(())
        );
        assert!(
            tei.check(br#"[{"index":1,"score":0.7},{"index":5,"score":0.2}]"#)
                .unwrap_err()
                .contains("index 5")
        );
        assert!(
            tei.check(br#"[{"index":1,"score":0.7},{"index":1,"score":0.2}]"#)
                .unwrap_err()
                .contains("twice")
        );
        assert!(tei.check(br#"[{"index":1}]"#).is_err());
    }
}
