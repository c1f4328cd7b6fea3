//! The JSON body extractor every POST route uses: it bounds the bodies read at once, checks the
//! content type, reads the body within `--payload-limit` and `--body-read-timeout-secs`, and
//! counts the texts before anything is parsed into strings, so a body of a million one-letter
//! texts is refused having allocated none of them. Rejections become [`ApiError`]s naming the
//! field or the limit.

use super::AppState;
use super::error::ApiError;
use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use loadgate_api::embed::ErrorType;
use serde::de::{self, DeserializeOwned, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess};
use std::cell::Cell;
use std::fmt;

/// `axum::Json` with the text count bounded before parsing and rejections answered as
/// [`ApiError`]s.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        // Held while the body is read and parsed, released before inference: bodies in memory
        // at once are bounded, whatever the request count.
        let Some(_reading) = state.body_read() else {
            return Err(ApiError {
                status: StatusCode::TOO_MANY_REQUESTS,
                error_type: ErrorType::Overloaded,
                message: format!(
                    "{} request bodies are being read already; retry later",
                    super::max_body_reads(&state.config().limits)
                ),
                retry_after: Some(1),
            });
        };
        if !is_json(&req) {
            return Err(ApiError::validation(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "send the body as JSON with the header Content-Type: application/json",
            ));
        }
        let payload_limit = state.payload_limit();
        // Bounded in time as well as size: a body that trickles in would otherwise hold its
        // body-read slot for as long as its client cares to keep sending. On timeout the body
        // is dropped half-read, so hyper closes the connection after the 408.
        let timeout = state.config().body_read_timeout;
        let read = tokio::time::timeout(timeout, Bytes::from_request(req, state)).await;
        let Ok(read) = read else {
            state.metrics().body_read_timeouts.inc();
            return Err(ApiError {
                status: StatusCode::REQUEST_TIMEOUT,
                error_type: ErrorType::Timeout,
                message: format!(
                    "the request body did not arrive within {} s (--body-read-timeout-secs)",
                    timeout.as_secs_f64()
                ),
                retry_after: None,
            });
        };
        let body = read.map_err(|rejection| {
            let status = rejection.status();
            if status == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::validation(
                    status,
                    format!(
                        "request body exceeds the limit of {payload_limit} bytes (--payload-limit)"
                    ),
                )
            } else {
                ApiError::validation(status, format!("could not read the body: {rejection}"))
            }
        })?;
        let max = state.config().limits.max_client_batch_size;
        if more_texts_than(&body, max) {
            return Err(ApiError::validation(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "more than {max} texts in one request exceed the limit of {max} \
                     (--max-client-batch-size)"
                ),
            ));
        }
        match axum::Json::<T>::from_bytes(&body) {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(rejection_to_error(&rejection)),
        }
    }
}

/// `application/json` or any `application/*+json`, as `axum::Json` accepts.
fn is_json(req: &Request) -> bool {
    let Some(value) = req.headers().get(header::CONTENT_TYPE) else {
        return false;
    };
    let Ok(value) = value.to_str() else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || essence
            .strip_prefix("application/")
            .is_some_and(|subtype| subtype.ends_with("+json"))
}

fn rejection_to_error(rejection: &JsonRejection) -> ApiError {
    let message = match rejection {
        JsonRejection::JsonSyntaxError(_) => format!("malformed JSON: {}", rejection.body_text()),
        _ => format!("invalid request: {}", rejection.body_text()),
    };
    ApiError::validation(rejection.status(), message)
}

/// The fields that carry texts: the tutorial's `texts`, TEI's `inputs`, OpenAI's `input`.
const TEXT_FIELDS: [&str; 3] = ["texts", "inputs", "input"];

/// Whether a text field of the top-level object holds more than `max` items. The scan skips
/// strings without copying them and stops at item `max + 1`; a body that is not an object, or
/// not JSON, is left to the full parse to answer (false).
pub fn more_texts_than(body: &[u8], max: usize) -> bool {
    let over = Cell::new(false);
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    // An error is either the scan stopping at `max + 1` (`over` is set) or a malformed body.
    let _ = TopLevel { max, over: &over }.deserialize(&mut deserializer);
    over.get()
}

/// Visits the top-level object, counting the items of each text field.
struct TopLevel<'a> {
    max: usize,
    over: &'a Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for TopLevel<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> de::Visitor<'de> for TopLevel<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<FieldName>()? {
            if key.is_text_field {
                map.next_value_seed(Count {
                    max: self.max,
                    over: self.over,
                })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

/// A key, remembered only as whether it names a text field (no allocation for the rest).
struct FieldName {
    is_text_field: bool,
}

impl<'de> de::Deserialize<'de> for FieldName {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Key;
        impl de::Visitor<'_> for Key {
            type Value = FieldName;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, key: &str) -> Result<FieldName, E> {
                Ok(FieldName {
                    is_text_field: TEXT_FIELDS.contains(&key),
                })
            }
        }
        deserializer.deserialize_identifier(Key)
    }
}

/// A text field's value: a list is counted item by item; anything else is skipped.
struct Count<'a> {
    max: usize,
    over: &'a Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for Count<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> de::Visitor<'de> for Count<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a text or a list of texts")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut items = 0usize;
        while seq.next_element::<IgnoredAny>()?.is_some() {
            items += 1;
            if items > self.max {
                self.over.set(true);
                return Err(de::Error::custom("too many texts"));
            }
        }
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(())
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_string<E: de::Error>(self, _: String) -> Result<(), E> {
        Ok(())
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::more_texts_than;

    #[test]
    fn counts_each_text_field_and_stops_at_the_first_text_over() {
        assert!(!more_texts_than(br#"{"texts":["a","b"]}"#, 2));
        assert!(more_texts_than(br#"{"texts":["a","b","c"]}"#, 2));
        assert!(more_texts_than(br#"{"inputs":["a","b","c"]}"#, 2));
        assert!(more_texts_than(
            br#"{"model":"m","input":["a","b","c"]}"#,
            2
        ));
        // Stops at item max + 1: what follows is never read, however long or broken.
        assert!(more_texts_than(
            br#"{"texts":["a","b","c", this is not JSON"#,
            2
        ));
        // A single text, other fields and nested lists are not texts of their own.
        assert!(!more_texts_than(
            br#"{"inputs":"one text","truncate":true}"#,
            1
        ));
        assert!(!more_texts_than(
            br#"{"other":["a","b","c"],"texts":["a"]}"#,
            2
        ));
        assert!(!more_texts_than(br#"{"texts":[["a","b","c"]]}"#, 2));
    }

    #[test]
    fn leaves_malformed_and_odd_bodies_to_the_full_parse() {
        for body in [
            &b"not json"[..],
            br#"["a","b","c"]"#,
            br#"{"texts":["a""#,
            br#"{"texts":{"a":1,"b":2,"c":3}}"#,
            br#"{"te\u0078ts":["a"]}"#,
            b"",
        ] {
            assert!(
                !more_texts_than(body, 2),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
