//! The frame a runner prints last on its standard output with `--results-log`: its full
//! [`RunResults`] as JSON, DEFLATE-compressed, base64 in lines of [`LINE`] characters between a
//! header line and an end line. The termination summary names the frame ([`ResultsRef`]: its
//! compressed size and CRC-32), so the operator, reading the pod's log through `pods/log`, asks
//! for just the frame's lines, and refuses one that is cut, interleaved or not the one named.
//!
//! ```text
//! loadgate-results v1 BYTES CRC32
//! <base64, LINE characters a line>
//! loadgate-results end
//! ```
//!
//! Logs are hostile input like termination messages: sizes are checked against the reference
//! before anything is decoded, the inflated JSON is capped, and the histograms inside are left to
//! the bounded [`crate::codec`].

use base64::Engine;
use loadgate_api::results::RunResults;
use loadgate_api::summary::ResultsRef;
use std::io::{Read, Write};

/// The header line's first words.
pub const BEGIN: &str = "loadgate-results v1";
/// The frame's last line.
pub const END: &str = "loadgate-results end";
/// Base64 characters a line.
pub const LINE: usize = 4096;
/// Largest compressed frame accepted (32 MiB): a 1 h run of one runner is about 1 MiB.
pub const MAX_FRAME_BYTES: u64 = 32 << 20;
/// Most bytes the frame may inflate to (128 MiB of JSON).
pub const MAX_INFLATED_BYTES: u64 = 128 << 20;
/// Most windows a frame may hold (a day of seconds), and most steps.
pub const MAX_WINDOWS: usize = 86_400;
/// Most steps a frame may hold.
pub const MAX_STEPS: usize = 4 * crate::capacity::MAX_CURVE_POINTS;

/// A frame ready to print, and the reference that names it.
#[derive(Debug, Clone)]
pub struct Frame {
    /// What the termination summary carries.
    pub reference: ResultsRef,
    /// The lines to print, each ending in `\n`.
    pub text: String,
}

/// Why a log holds no usable frame.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The reference names a frame larger than accepted.
    #[error("the summary names a {0}-byte results frame, more than the {MAX_FRAME_BYTES} accepted")]
    TooLarge(u64),
    /// No header line in the log.
    #[error("the log holds no results frame")]
    Missing,
    /// A header that is not the one the summary names.
    #[error("the log's results frame is {found:?}, the summary names {expected:?}")]
    NotNamed {
        /// The header's words after [`BEGIN`].
        found: String,
        /// What the summary names.
        expected: String,
    },
    /// The frame ends early, or its lines are not base64 of the named size.
    #[error("the results frame is cut or garbled: {0}")]
    Garbled(String),
    /// Its checksum is not the named one.
    #[error("the results frame's CRC-32 is {found:08x}, the summary names {expected:08x}")]
    Checksum {
        /// Computed.
        found: u32,
        /// Named.
        expected: u32,
    },
    /// The inflated JSON is not run results, or holds more than accepted.
    #[error("the results frame does not hold run results: {0}")]
    Content(String),
    /// It inflates past what the caller can hold (its decode budget): refused before more is
    /// inflated.
    #[error("the results frame inflates past the {0} bytes its reader can hold")]
    OverBudget(u64),
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = flate2::Crc::new();
    crc.update(bytes);
    crc.sum()
}

/// The frame of `results`.
pub fn encode(results: &RunResults) -> Frame {
    let json = serde_json::to_vec(results).expect("run results serialise; this is a bug");
    let mut deflate = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::new(6));
    deflate
        .write_all(&json)
        .expect("compressing into memory cannot fail; this is a bug");
    let bytes = deflate
        .finish()
        .expect("compressing into memory cannot fail; this is a bug");
    frame_of_deflated(&bytes)
}

/// The frame of bytes already DEFLATE-compressed: [`encode`]'s second half, and how a test
/// builds a frame that checks out but holds anything (a bomb, a forgery).
pub fn frame_of_deflated(bytes: &[u8]) -> Frame {
    let reference = ResultsRef {
        bytes: bytes.len() as u64,
        crc32: crc32(bytes),
    };
    let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
    let mut text = String::with_capacity(b64.len() + b64.len() / LINE + 64);
    text.push_str(&header(&reference));
    text.push('\n');
    for chunk in b64.as_bytes().chunks(LINE) {
        text.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        text.push('\n');
    }
    text.push_str(END);
    text.push('\n');
    Frame { reference, text }
}

fn header(reference: &ResultsRef) -> String {
    format!("{BEGIN} {} {:08x}", reference.bytes, reference.crc32)
}

fn base64_len(bytes: u64) -> u64 {
    bytes.div_ceil(3) * 4
}

/// Lines of the frame `reference` names: what to ask `pods/log` for as `tailLines` (callers
/// add a few for output after it).
pub fn lines(reference: &ResultsRef) -> u64 {
    base64_len(reference.bytes).div_ceil(LINE as u64) + 2
}

/// Bytes of the frame `reference` names, as printed: what to ask `pods/log` for as
/// `limitBytes` (callers add a little for output after it).
pub fn text_len(reference: &ResultsRef) -> u64 {
    let b64 = base64_len(reference.bytes);
    header(reference).len() as u64 + 1 + b64 + b64.div_ceil(LINE as u64) + END.len() as u64 + 1
}

/// The results in the last frame of `log`, checked against `reference` (size, checksum) and
/// bounded before each allocation.
///
/// # Errors
/// [`FrameError`] naming what is wrong.
pub fn decode(log: &str, reference: &ResultsRef) -> Result<RunResults, FrameError> {
    decode_within(log, reference, MAX_INFLATED_BYTES).map(|(results, _)| results)
}

/// [`decode`], inflating at most `budget` bytes (the reader's share of its memory): a frame that
/// inflates past it is refused with [`FrameError::OverBudget`] before more is inflated. Returns
/// the results and how many bytes the frame inflated to (what the caller spends of its budget).
///
/// # Errors
/// [`FrameError`] naming what is wrong.
pub fn decode_within(
    log: &str,
    reference: &ResultsRef,
    budget: u64,
) -> Result<(RunResults, u64), FrameError> {
    if reference.bytes > MAX_FRAME_BYTES {
        return Err(FrameError::TooLarge(reference.bytes));
    }
    let cap = budget.min(MAX_INFLATED_BYTES);
    let start = log
        .rmatch_indices(BEGIN)
        .map(|(at, _)| at)
        .find(|&at| at == 0 || log.as_bytes()[at - 1] == b'\n')
        .ok_or(FrameError::Missing)?;
    let mut lines = log[start..].lines();
    let found = lines.next().unwrap_or_default();
    let expected = header(reference);
    if found != expected {
        return Err(FrameError::NotNamed {
            found: found[BEGIN.len()..].trim().chars().take(64).collect(),
            expected: expected[BEGIN.len()..].trim().to_owned(),
        });
    }
    let want = usize::try_from(base64_len(reference.bytes))
        .map_err(|_| FrameError::TooLarge(reference.bytes))?;
    let mut b64 = String::with_capacity(want);
    let mut ended = false;
    for line in lines {
        if line == END {
            ended = true;
            break;
        }
        if b64.len() + line.len() > want {
            return Err(FrameError::Garbled(format!(
                "more than the {want} base64 characters named"
            )));
        }
        b64.push_str(line);
    }
    if !ended {
        return Err(FrameError::Garbled(format!(
            "no end line after {} of {want} base64 characters",
            b64.len()
        )));
    }
    if b64.len() != want {
        return Err(FrameError::Garbled(format!(
            "{} base64 characters, the summary names {want}",
            b64.len()
        )));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.as_bytes())
        .map_err(|e| FrameError::Garbled(e.to_string()))?;
    drop(b64);
    let crc = crc32(&bytes);
    if bytes.len() as u64 != reference.bytes || crc != reference.crc32 {
        return Err(FrameError::Checksum {
            found: crc,
            expected: reference.crc32,
        });
    }
    let json = inflate_at_most(&bytes, cap)
        .map_err(|e| FrameError::Content(format!("does not inflate: {e}")))?;
    drop(bytes);
    if json.len() as u64 > cap {
        if cap < MAX_INFLATED_BYTES {
            return Err(FrameError::OverBudget(cap));
        }
        return Err(FrameError::Content(format!(
            "inflates past {MAX_INFLATED_BYTES} bytes"
        )));
    }
    let inflated = json.len() as u64;
    let results: RunResults =
        serde_json::from_slice(&json).map_err(|e| FrameError::Content(e.to_string()))?;
    if results.windows.len() > MAX_WINDOWS || results.steps.len() > MAX_STEPS {
        return Err(FrameError::Content(format!(
            "{} windows and {} steps, more than the {MAX_WINDOWS} and {MAX_STEPS} accepted",
            results.windows.len(),
            results.steps.len()
        )));
    }
    Ok((results, inflated))
}

/// `deflated` inflated, up to `cap` + 1 bytes (one more than allowed tells the caller it went
/// past). The buffer grows by doubling but never past `cap` + 1, so a bomb costs at most that
/// (a plain `read_to_end` would double a 32 MiB buffer to 64 MiB for its last byte).
fn inflate_at_most(deflated: &[u8], cap: u64) -> std::io::Result<Vec<u8>> {
    let most = usize::try_from(cap.saturating_add(1)).unwrap_or(usize::MAX);
    let mut reader = flate2::read::DeflateDecoder::new(deflated);
    let mut json: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 64 << 10];
    while json.len() < most {
        let want = chunk.len().min(most - json.len());
        let n = reader.read(&mut chunk[..want])?;
        if n == 0 {
            break;
        }
        if json.capacity() - json.len() < n {
            let grow = json.capacity().max(n).min(most - json.len());
            json.reserve_exact(grow);
        }
        json.extend_from_slice(&chunk[..n]);
    }
    Ok(json)
}

#[cfg(test)]
mod tests {
    use super::*;
    use loadgate_api::results::WindowResult;
    use loadgate_api::stats::RequestStats;
    use loadgate_api::summary::RunSummary;

    fn results(windows: u32) -> RunResults {
        let stats = RequestStats {
            name: "Aggregated".into(),
            method: String::new(),
            requests: 3,
            failures: 0,
            not_sent: 0,
            error_rate: 0.0,
            rps: 1.0,
            mean_ms: 1.0,
            p50_ms: 1.0,
            p90_ms: 1.0,
            p95_ms: 1.0,
            p99_ms: 1.0,
            max_ms: 1.0,
            histogram: None,
            embeddings: 0,
            llm: None,
        };
        RunResults {
            summary: RunSummary {
                profile: "p".into(),
                duration_seconds: 3.0,
                users: 1,
                total: stats,
                tasks: vec![],
                violations: vec![],
                passed: true,
                interrupted: false,
                start_delay: None,
                curve: vec![],
                capacity: None,
                started_at_ms: Some(1),
                results: None,
                aborted: None,
                warmup_seconds: None,
                quality: None,
                connections: None,
                dataset: None,
                failure_reasons: Vec::new(),
            },
            steps: vec![],
            windows: (0..windows)
                .map(|w| WindowResult {
                    seconds: None,
                    window: w,
                    users: 1,
                    requests: u64::from(w) * 7919 % 1000,
                    failures: 0,
                    histogram: Some(format!("{w:x}{}", "HISTOGRAM".repeat(w as usize % 17))),
                    warmup: Default::default(),
                    llm: None,
                })
                .collect(),
        }
    }

    #[test]
    fn a_frame_reads_back_from_a_log_with_output_around_it() {
        let r = results(5000);
        let frame = encode(&r);
        assert!(frame.text.lines().count() as u64 == lines(&frame.reference));
        assert_eq!(frame.text.len() as u64, text_len(&frame.reference));
        let log = format!(
            "starting\n{BEGIN} 12 00000000\nold frame, cut\n{}trailing line\n",
            frame.text
        );
        assert_eq!(decode(&log, &frame.reference).unwrap(), r);
    }

    #[test]
    fn a_cut_swapped_or_forged_frame_is_refused_with_the_reason() {
        let frame = encode(&results(3000));
        let text = &frame.text;
        // Cut: the log ends inside the frame.
        let cut = &text[..text.len() / 2];
        assert!(matches!(
            decode(cut, &frame.reference),
            Err(FrameError::Garbled(_))
        ));
        // Another run's frame.
        let other = encode(&results(2999));
        assert!(matches!(
            decode(&other.text, &frame.reference),
            Err(FrameError::NotNamed { .. })
        ));
        // One character changed keeps the size but not the checksum.
        let mut bytes = text.clone().into_bytes();
        let at = text.find('\n').unwrap() + 10;
        bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(bytes).unwrap();
        assert!(matches!(
            decode(&flipped, &frame.reference),
            Err(FrameError::Checksum { .. } | FrameError::Garbled(_))
        ));
        // Lines interleaved from another writer.
        let mut lines: Vec<&str> = text.lines().collect();
        lines.insert(2, "a stray line");
        let interleaved = lines.join("\n");
        assert!(decode(&interleaved, &frame.reference).is_err());
        // A reference naming a huge frame is refused before anything is read.
        let huge = ResultsRef {
            bytes: MAX_FRAME_BYTES + 1,
            crc32: 0,
        };
        assert!(matches!(decode(text, &huge), Err(FrameError::TooLarge(_))));
        assert!(matches!(
            decode("no frame here", &frame.reference),
            Err(FrameError::Missing)
        ));
    }

    #[test]
    fn a_bomb_inside_a_valid_frame_is_capped() {
        // Valid size and checksum, content inflating past the cap.
        let mut deflate =
            flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![b' '; 1 << 20];
        for _ in 0..(MAX_INFLATED_BYTES >> 20) + 1 {
            deflate.write_all(&zeros).unwrap();
        }
        let bytes = deflate.finish().unwrap();
        let reference = ResultsRef {
            bytes: bytes.len() as u64,
            crc32: crc32(&bytes),
        };
        let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
        let mut log = header(&reference) + "\n";
        for chunk in b64.as_bytes().chunks(LINE) {
            log.push_str(std::str::from_utf8(chunk).unwrap());
            log.push('\n');
        }
        log.push_str(END);
        let err = decode(&log, &reference).unwrap_err();
        assert!(err.to_string().contains("inflates past"), "{err}");
    }
}
