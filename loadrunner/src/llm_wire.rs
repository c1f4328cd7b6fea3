//! The wire of OpenAI-compatible LLM APIs: the body a chat or completion task sends
//! ([`body`]), and the reading of its answer, streamed as server-sent events ([`StreamReader`]:
//! fed each piece of body as it arrives, it times the first content token and every gap after
//! it) or whole ([`read_whole`]). An answer with no content, an error event, or a stream that ends
//! before `data: [DONE]` is a failure with its reason.
//!
//! | task | request | streamed chunk | whole answer |
//! | --- | --- | --- | --- |
//! | `chat` | `{"model", "messages", "max_tokens", "stream", "stream_options"}` | `{"choices": [{"delta": {"content"}}]}` | `{"choices": [{"message": {"content"}}], "usage"}` |
//! | `completion` | `{"model", "prompt", "max_tokens", "stream", "stream_options"}` | `{"choices": [{"text"}]}` | `{"choices": [{"text"}], "usage"}` |
//!
//! `stream_options: {"include_usage": true}` asks the server for a last chunk with `usage`; its
//! `completion_tokens` is the output token count when it comes, else each content chunk counts
//! as one token.

use bytes::Bytes;
use loadgate_api::llm_request::LlmRequest;
use serde::Deserialize;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// A prompt: one text, or a chat's messages (`[{"role", "content"}]`, from the team's dataset).
#[derive(Debug, Clone, PartialEq)]
pub enum Prompt {
    /// A text (a chat sends it as one user message).
    Text(String),
    /// Chat messages as the dataset gave them.
    Messages(Vec<Message>),
}

/// One chat message.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Message {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// Its text.
    pub content: String,
}

impl Prompt {
    /// The prompt as one text (a completion sends messages as `role: content` lines).
    pub fn text(&self) -> String {
        match self {
            Prompt::Text(t) => t.clone(),
            Prompt::Messages(m) => m
                .iter()
                .map(|m| format!("{}: {}", m.role, m.content))
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }
}

/// The body of a chat (`chat` true) or completion request of `prompt`.
pub fn body(request: &LlmRequest, chat: bool, prompt: &Prompt) -> Bytes {
    let mut body = if chat {
        let messages = match prompt {
            Prompt::Text(t) => json!([{ "role": "user", "content": t }]),
            Prompt::Messages(m) => json!(m),
        };
        json!({ "messages": messages })
    } else {
        json!({ "prompt": prompt.text() })
    };
    body["max_tokens"] = json!(request.max_tokens);
    body["stream"] = json!(request.stream);
    if request.stream {
        body["stream_options"] = json!({ "include_usage": true });
    }
    if let Some(model) = &request.model {
        body["model"] = json!(model);
    }
    if let Some(t) = request.temperature {
        body["temperature"] = json!(t);
    }
    Bytes::from(serde_json::to_vec(&body).expect("JSON of strings serialises; this is a bug"))
}

/// Most bytes one server-sent event may hold before it is a failure (a chunk is ~200 bytes).
pub const MAX_EVENT_BYTES: usize = 1 << 20;

/// What an answer said: its content pieces and the server's token counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counted {
    /// Chunks (or, whole, choices) that carried content.
    pub content_chunks: u64,
    /// `usage.prompt_tokens`.
    pub prompt_tokens: Option<u64>,
    /// `usage.completion_tokens`.
    pub completion_tokens: Option<u64>,
}

/// A streamed answer, read as it arrives: feed it each piece of body with the time it came
/// ([`Self::feed`]), then [`Self::finish`].
#[derive(Debug)]
pub struct StreamReader {
    chat: bool,
    /// Bytes of the event being read (lines not yet ended).
    pending: Vec<u8>,
    /// The `data:` of the event being read.
    data: Vec<u8>,
    first: Option<Instant>,
    last: Option<Instant>,
    gaps: Vec<Duration>,
    counted: Counted,
    done: bool,
}

impl StreamReader {
    /// A reader of a chat (`chat` true) or completion stream.
    pub fn new(chat: bool) -> Self {
        Self {
            chat,
            pending: Vec::new(),
            data: Vec::new(),
            first: None,
            last: None,
            gaps: Vec::new(),
            counted: Counted::default(),
            done: false,
        }
    }

    /// Reads `bytes` that arrived at `at`; `Err` is the failure reason (an error event, an
    /// event too large or not JSON).
    pub fn feed(&mut self, bytes: &[u8], at: Instant) -> Result<(), String> {
        self.pending.extend_from_slice(bytes);
        let mut start = 0;
        while let Some(end) = self.pending[start..]
            .iter()
            .position(|&b| b == b'\n')
            .map(|i| start + i)
        {
            let line = &self.pending[start..end];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let line = line.to_vec();
            start = end + 1;
            self.line(&line, at)?;
        }
        self.pending.drain(..start);
        if self.pending.len() + self.data.len() > MAX_EVENT_BYTES {
            return Err(format!(
                "bad response: a stream event over {} KiB",
                MAX_EVENT_BYTES >> 10
            ));
        }
        Ok(())
    }

    fn line(&mut self, line: &[u8], at: Instant) -> Result<(), String> {
        if line.is_empty() {
            let data = std::mem::take(&mut self.data);
            return self.event(&data, at);
        }
        if let Some(value) = line.strip_prefix(b"data:") {
            let value = value.strip_prefix(b" ").unwrap_or(value);
            if !self.data.is_empty() {
                self.data.push(b'\n');
            }
            self.data.extend_from_slice(value);
        }
        // Comments (`: keep-alive`), `event:`, `id:` and `retry:` lines carry no data.
        Ok(())
    }

    fn event(&mut self, data: &[u8], at: Instant) -> Result<(), String> {
        if data.is_empty() || self.done {
            return Ok(());
        }
        if data == b"[DONE]" {
            self.done = true;
            return Ok(());
        }
        let chunk: Value = serde_json::from_slice(data)
            .map_err(|e| format!("bad response: a stream event is not JSON ({e})"))?;
        if let Some(why) = error_of(&chunk) {
            return Err(format!("stream error: {why}"));
        }
        let counts = count(&chunk, self.chat, true);
        if counts.content_chunks > 0 {
            match self.last {
                None => self.first = Some(at),
                Some(last) => self.gaps.push(at.saturating_duration_since(last)),
            }
            self.last = Some(at);
            self.counted.content_chunks += 1;
        }
        if counts.completion_tokens.is_some() {
            self.counted.completion_tokens = counts.completion_tokens;
            self.counted.prompt_tokens = counts.prompt_tokens;
        }
        Ok(())
    }

    /// The answer as a sample, timed from `since` (the request's start, or scheduled start)
    /// less `dial` (opening the connection); `prompt_estimate` is the input token count when
    /// the server gave none. `Err` is the failure reason.
    pub fn finish(
        mut self,
        since: Instant,
        dial: Duration,
        prompt_estimate: u64,
    ) -> Result<loadgate_results::sample::LlmSample, String> {
        if !self.pending.is_empty() {
            // A last event without its blank line.
            let at = self.last.unwrap_or(since);
            let rest = std::mem::take(&mut self.pending);
            let rest = rest.strip_suffix(b"\r").unwrap_or(&rest).to_vec();
            self.line(&rest, at)?;
            let data = std::mem::take(&mut self.data);
            self.event(&data, at)?;
        } else if !self.data.is_empty() {
            let data = std::mem::take(&mut self.data);
            self.event(&data, self.last.unwrap_or(since))?;
        }
        let Some(first) = self.first else {
            return Err("bad response: empty answer (no content token)".to_owned());
        };
        if !self.done {
            return Err(format!(
                "bad response: the stream ended before [DONE] after {} content chunks",
                self.counted.content_chunks
            ));
        }
        Ok(sample(
            self.counted,
            first.saturating_duration_since(since).saturating_sub(dial),
            self.gaps,
            true,
            prompt_estimate,
        ))
    }
}

fn sample(
    counted: Counted,
    ttft: Duration,
    gaps: Vec<Duration>,
    streamed: bool,
    prompt_estimate: u64,
) -> loadgate_results::sample::LlmSample {
    loadgate_results::sample::LlmSample {
        ttft,
        gaps,
        input_tokens: counted.prompt_tokens.unwrap_or(prompt_estimate),
        output_tokens: counted.completion_tokens.unwrap_or(counted.content_chunks),
        from_usage: counted.completion_tokens.is_some(),
        streamed,
    }
}

/// A whole (not streamed) answer that took `latency`: its tokens, TTFT = latency. `Err` is the
/// failure reason.
pub fn read_whole(
    chat: bool,
    answer: &[u8],
    latency: Duration,
    prompt_estimate: u64,
) -> Result<loadgate_results::sample::LlmSample, String> {
    let value: Value = serde_json::from_slice(answer)
        .map_err(|_| "bad response: not a JSON completion".to_owned())?;
    if let Some(why) = error_of(&value) {
        return Err(format!("bad response: {why}"));
    }
    let counted = count(&value, chat, false);
    if counted.content_chunks == 0 {
        return Err("bad response: empty answer (no content)".to_owned());
    }
    Ok(sample(counted, latency, Vec::new(), false, prompt_estimate))
}

/// An error the body reports (`{"error": …}`, vLLM's `{"object": "error", "message"}`), cut to
/// 120 characters.
fn error_of(value: &Value) -> Option<String> {
    let error = value.get("error").filter(|e| !e.is_null()).or_else(|| {
        (value.get("object").and_then(Value::as_str) == Some("error")).then_some(value)
    })?;
    let text = error
        .get("message")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| error.as_str().map(str::to_owned))
        .unwrap_or_else(|| error.to_string());
    Some(text.chars().take(120).collect())
}

/// The content pieces and usage of a chunk (`delta` true) or a whole answer.
fn count(value: &Value, chat: bool, delta: bool) -> Counted {
    let has_text = |v: Option<&Value>| v.and_then(Value::as_str).is_some_and(|s| !s.is_empty());
    let content = value
        .get("choices")
        .and_then(Value::as_array)
        .map_or(0, |choices| {
            choices
                .iter()
                .filter(|c| {
                    if !chat {
                        return has_text(c.get("text"));
                    }
                    let m = c.get(if delta { "delta" } else { "message" });
                    m.is_some_and(|m| {
                        has_text(m.get("content")) || has_text(m.get("reasoning_content"))
                    })
                })
                .count() as u64
        });
    let usage = value.get("usage").filter(|u| !u.is_null());
    let tokens = |field: &str| usage.and_then(|u| u.get(field)).and_then(Value::as_u64);
    Counted {
        content_chunks: content.min(1),
        prompt_tokens: tokens("prompt_tokens"),
        completion_tokens: tokens("completion_tokens"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(text: &str) -> String {
        format!(
            "data: {}\n\n",
            json!({"choices":[{"index":0,"delta":{"content":text}}]})
        )
    }

    #[test]
    fn bodies_take_each_apis_shape() {
        let mut r = LlmRequest::streaming(64);
        r.model = Some("smol".into());
        let chat: Value =
            serde_json::from_slice(&body(&r, true, &Prompt::Text("hi".into()))).unwrap();
        assert_eq!(chat["messages"][0]["content"], "hi");
        assert_eq!(
            (&chat["max_tokens"], &chat["stream"], &chat["model"]),
            (&json!(64), &json!(true), &json!("smol"))
        );
        assert_eq!(chat["stream_options"]["include_usage"], true);
        r.stream = false;
        let completion: Value =
            serde_json::from_slice(&body(&r, false, &Prompt::Text("hi".into()))).unwrap();
        assert_eq!(
            (&completion["prompt"], completion.get("stream_options")),
            (&json!("hi"), None)
        );
    }

    #[test]
    fn a_stream_split_anywhere_times_its_first_token_and_gaps() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut wire = String::from(": keep-alive\n\n");
        wire += &format!(
            "data: {}\n\n",
            json!({"choices":[{"delta":{"role":"assistant"}}]})
        );
        let pieces = [chunk("Hello"), chunk(" world"), chunk("!")];
        let mut r = StreamReader::new(true);
        r.feed(wire.as_bytes(), ms(50)).unwrap();
        // A chunk split mid-line arrives whole only with its second half.
        let (a, b) = pieces[0].split_at(9);
        r.feed(a.as_bytes(), ms(140)).unwrap();
        r.feed(b.as_bytes(), ms(150)).unwrap();
        r.feed(pieces[1].replace('\n', "\r\n").as_bytes(), ms(160))
            .unwrap();
        r.feed(pieces[2].as_bytes(), ms(175)).unwrap();
        let usage = json!({"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":3}});
        r.feed(
            format!("data: {usage}\n\ndata: [DONE]\n\n").as_bytes(),
            ms(176),
        )
        .unwrap();
        let s = r.finish(t0, Duration::from_millis(20), 99).unwrap();
        assert_eq!(
            s.ttft,
            Duration::from_millis(130),
            "150 ms less the 20 ms dial"
        );
        assert_eq!(
            s.gaps,
            [Duration::from_millis(10), Duration::from_millis(15)]
        );
        assert_eq!(
            (s.input_tokens, s.output_tokens, s.from_usage),
            (12, 3, true)
        );
    }

    #[test]
    fn without_usage_each_content_chunk_is_a_token() {
        let t0 = Instant::now();
        let mut r = StreamReader::new(false);
        for (i, text) in ["a", "", "b"].iter().enumerate() {
            let c = json!({"choices":[{"text":text}]});
            r.feed(
                format!("data: {c}\n\n").as_bytes(),
                t0 + Duration::from_millis(i as u64),
            )
            .unwrap();
        }
        r.feed(b"data: [DONE]", t0).unwrap();
        let s = r.finish(t0, Duration::ZERO, 7).unwrap();
        assert_eq!(
            (s.output_tokens, s.from_usage, s.input_tokens),
            (2, false, 7)
        );
    }

    #[test]
    fn broken_empty_and_failed_streams_are_failures_with_their_reason() {
        let t0 = Instant::now();
        let mut broken = StreamReader::new(true);
        broken.feed(chunk("a").as_bytes(), t0).unwrap();
        let why = broken.finish(t0, Duration::ZERO, 1).unwrap_err();
        assert!(
            why.contains("ended before [DONE] after 1 content chunks"),
            "{why}"
        );

        let mut empty = StreamReader::new(true);
        empty.feed(b"data: [DONE]\n\n", t0).unwrap();
        let why = empty.finish(t0, Duration::ZERO, 1).unwrap_err();
        assert!(why.contains("empty answer"), "{why}");

        let mut failed = StreamReader::new(true);
        let error = json!({"error":{"message":"model overloaded","type":"server_error"}});
        let why = failed
            .feed(format!("data: {error}\n\n").as_bytes(), t0)
            .unwrap_err();
        assert_eq!(why, "stream error: model overloaded");

        let mut garbage = StreamReader::new(true);
        assert!(garbage.feed(b"data: {nope\n\n", t0).is_err());
        let mut endless = StreamReader::new(true);
        let line = vec![b'x'; MAX_EVENT_BYTES + 1];
        assert!(
            endless
                .feed(&line, t0)
                .unwrap_err()
                .contains("over 1024 KiB")
        );
    }

    #[test]
    fn a_whole_answer_has_its_latency_as_ttft() {
        let answer = json!({"choices":[{"message":{"role":"assistant","content":"hi there"}}],
                            "usage":{"prompt_tokens":5,"completion_tokens":2}});
        let s = read_whole(
            true,
            answer.to_string().as_bytes(),
            Duration::from_millis(80),
            1,
        )
        .unwrap();
        assert_eq!(
            (s.ttft, s.output_tokens, s.streamed),
            (Duration::from_millis(80), 2, false)
        );
        let empty = json!({"choices":[{"message":{"content":""}}]});
        assert!(read_whole(true, empty.to_string().as_bytes(), Duration::ZERO, 1).is_err());
        let vllm = json!({"object":"error","message":"bad model","code":404});
        let why = read_whole(true, vllm.to_string().as_bytes(), Duration::ZERO, 1).unwrap_err();
        assert_eq!(why, "bad response: bad model");
    }
}
