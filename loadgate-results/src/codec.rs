//! The latency histogram's wire form in run summaries (HdrHistogram V2 + DEFLATE, base64) and a
//! decoder bounded before it allocates.
//!
//! Summaries reach the operator from runner pods, which any user of the namespace can forge, so
//! decoding treats every byte as hostile. hdrhistogram's own deserializer sizes its buffers and
//! counts array from the header (about 60 bytes can ask it for 4 GiB) and negates a zero-run
//! length that can overflow, so [`decode`] checks everything first: the base64 length, the
//! compressed length, the inflated size (inflated here with a cap), each V2 header field, and
//! every entry of the count array; only a histogram that passes is handed to the deserializer.

use base64::Engine;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use std::io::Read;

/// Longest base64 histogram accepted (1 MiB). Today a histogram travels in a pod's termination
/// message, 4 KiB for the whole summary; 1 MiB, what a ConfigMap holds, leaves room for a larger
/// results channel. It is the memory bound: base64 of at most 1 MiB decodes to at most 768 KiB.
pub const MAX_ENCODED_LEN: usize = 1 << 20;

/// Most bytes the DEFLATE part may inflate to (256 KiB). The largest valid histogram, 1 µs ..
/// [`MAX_HIGHEST`] at 3 significant digits, has 24,576 counts of at most 9 bytes each after a
/// 40-byte header: 221,224 bytes (a test checks it fits).
pub const MAX_INFLATED_LEN: usize = 256 << 10;

/// Longest latency a histogram holds (1 hour, in µs); longer ones are clamped.
pub const MAX_MICROS: u64 = 3_600_000_000;

/// Largest `highest trackable value` accepted: twice the runner's 1 h (µs) histogram bound, so
/// its histograms, and those of a runner with a somewhat larger bound, decode; nothing larger.
pub const MAX_HIGHEST: u64 = 2 * MAX_MICROS;

/// Most significant digits accepted: the runner records at 3 and coarsens to 2; 5, the format's
/// limit, needs a counts array 100 times larger.
pub const MAX_SIGNIFICANT_DIGITS: u32 = 3;

/// Largest total count a histogram may hold: the V2 format writes each count as a signed
/// 64-bit number, so a histogram whose total stays below this (decoded ones, and sums of
/// them, which [`crate::merge`] checks) can always be encoded again.
pub const MAX_COUNT: u64 = i64::MAX as u64;

/// Cookie of the V2 + DEFLATE encoding (hdrhistogram `V2_COMPRESSED_COOKIE`).
const COMPRESSED_COOKIE: u32 = 0x1c84_9314;
/// Cookie of the inflated V2 encoding (hdrhistogram `V2_COOKIE`).
const V2_COOKIE: u32 = 0x1c84_9313;
/// Size of the V2 header: cookie, payload length, normalizing offset, significant digits
/// (4 bytes each), lowest and highest value (8 each), integer-to-double ratio (8).
const V2_HEADER_LEN: usize = 40;
/// Size of the compressed envelope's header: cookie and compressed length.
const ENVELOPE_LEN: usize = 8;

/// Why an encoded histogram was refused.
#[derive(Debug, thiserror::Error)]
pub enum HistogramError {
    /// The base64 text is longer than [`MAX_ENCODED_LEN`].
    #[error("{len} bytes of base64, more than the {max} accepted")]
    TooLong {
        /// Its length.
        len: usize,
        /// [`MAX_ENCODED_LEN`].
        max: usize,
    },
    /// Not base64.
    #[error("not base64: {0}")]
    Base64(#[from] base64::DecodeError),
    /// The bytes end inside a header.
    #[error("truncated: {have} bytes, a {what} needs {need}")]
    Truncated {
        /// Which header.
        what: &'static str,
        /// Bytes it needs.
        need: usize,
        /// Bytes there are.
        have: usize,
    },
    /// A cookie other than V2 + DEFLATE's (or, inside, V2's).
    #[error("{what} cookie is {found:#010x}, expected {expected:#010x}")]
    Cookie {
        /// Which cookie.
        what: &'static str,
        /// What it is.
        found: u32,
        /// What it must be.
        expected: u32,
    },
    /// A length field that disagrees with the bytes present.
    #[error("the {what} claims {claimed} bytes but {present} follow")]
    Length {
        /// Which length.
        what: &'static str,
        /// What the field says.
        claimed: u64,
        /// What is there.
        present: usize,
    },
    /// The DEFLATE stream is corrupt.
    #[error("DEFLATE stream does not inflate: {0}")]
    Inflate(#[source] std::io::Error),
    /// The DEFLATE stream inflates to more than [`MAX_INFLATED_LEN`].
    #[error("inflates to more than the {max} bytes accepted")]
    Inflated {
        /// [`MAX_INFLATED_LEN`].
        max: usize,
    },
    /// A V2 header field outside what the runner writes.
    #[error("header field {field} is {value}, expected {expected}")]
    Header {
        /// The field.
        field: &'static str,
        /// Its value.
        value: String,
        /// What is accepted.
        expected: &'static str,
    },
    /// The count array does not fit the header's value range, or its counts overflow.
    #[error("count array: {0}")]
    Counts(&'static str),
    /// hdrhistogram refused a histogram that passed every check (not expected).
    #[error("hdrhistogram refused it: {0}")]
    Deserialize(#[source] hdrhistogram::serialization::DeserializeError),
}

/// A histogram as base64 of its V2 + DEFLATE encoding.
///
/// # Panics
/// When a count exceeds [`MAX_COUNT`] (9.2 × 10^18 requests, which no run reaches; decoded and
/// merged histograms are kept within it).
pub fn encode(histogram: &Histogram<u64>) -> String {
    let mut bytes = Vec::new();
    V2DeflateSerializer::new()
        .serialize(histogram, &mut bytes)
        .expect("serialising into memory cannot fail; this is a bug");
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The same values at 2 significant digits (1% resolution): a tenth of the size encoded.
pub fn coarsen(histogram: &Histogram<u64>) -> Histogram<u64> {
    let mut coarse = Histogram::new_with_bounds(1, histogram.high().max(2), 2)
        .expect("bounds from a valid histogram are valid; this is a bug");
    for value in histogram.iter_recorded() {
        coarse.saturating_record_n(value.value_iterated_to(), value.count_at_value());
    }
    coarse
}

/// The histogram `encoded` holds, checked within the bounds above before anything is allocated
/// for it. No input makes this panic or allocate more than about 2 MiB: the decoded base64
/// (≤ 768 KiB), the inflated bytes (≤ 256 KiB, up to twice that in vector capacity), two
/// counts arrays (≤ 192 KiB each) and hdrhistogram's payload buffer (≤ 256 KiB).
///
/// # Errors
/// [`HistogramError`] saying which check failed.
pub fn decode(encoded: &str) -> Result<Histogram<u64>, HistogramError> {
    if encoded.len() > MAX_ENCODED_LEN {
        return Err(HistogramError::TooLong {
            len: encoded.len(),
            max: MAX_ENCODED_LEN,
        });
    }
    let bytes = base64::engine::general_purpose::STANDARD.decode(encoded)?;
    let v2 = inflate(&bytes)?;
    let header = Header::parse(&v2)?;
    let payload = &v2[V2_HEADER_LEN..];
    // Bounded by the checked header: at most 24,576 counts (192 KiB).
    let empty = Histogram::<u64>::new_with_bounds(header.lowest, header.highest, header.digits)
        .map_err(|e| HistogramError::Header {
            field: "bounds",
            value: format!(
                "{}..{} at {} digits: {e:?}",
                header.lowest, header.highest, header.digits
            ),
            expected: "bounds hdrhistogram accepts",
        })?;
    let total = check_counts(payload, empty.distinct_values())?;
    let histogram: Histogram<u64> = Deserializer::new()
        .deserialize(&mut v2.as_slice())
        .map_err(HistogramError::Deserialize)?;
    if histogram.len() != total {
        return Err(HistogramError::Counts(
            "hdrhistogram read a different total count; this is a bug",
        ));
    }
    Ok(histogram)
}

/// The V2 bytes inside the compressed envelope, inflated with a cap.
fn inflate(bytes: &[u8]) -> Result<Vec<u8>, HistogramError> {
    let (cookie, claimed) = match (be_u32(bytes, 0), be_u32(bytes, 4)) {
        (Some(cookie), Some(claimed)) => (cookie, claimed),
        _ => {
            return Err(HistogramError::Truncated {
                what: "compressed header",
                need: ENVELOPE_LEN,
                have: bytes.len(),
            });
        }
    };
    if cookie != COMPRESSED_COOKIE {
        return Err(HistogramError::Cookie {
            what: "V2 + DEFLATE",
            found: cookie,
            expected: COMPRESSED_COOKIE,
        });
    }
    let compressed = &bytes[ENVELOPE_LEN..];
    if u64::from(claimed) != compressed.len() as u64 {
        return Err(HistogramError::Length {
            what: "compressed length",
            claimed: u64::from(claimed),
            present: compressed.len(),
        });
    }
    let mut v2 = Vec::new();
    flate2::read::ZlibDecoder::new(compressed)
        .take(MAX_INFLATED_LEN as u64 + 1)
        .read_to_end(&mut v2)
        .map_err(HistogramError::Inflate)?;
    if v2.len() > MAX_INFLATED_LEN {
        return Err(HistogramError::Inflated {
            max: MAX_INFLATED_LEN,
        });
    }
    Ok(v2)
}

/// The V2 header fields the checks need.
#[derive(Debug, Clone, Copy)]
struct Header {
    digits: u8,
    lowest: u64,
    highest: u64,
}

impl Header {
    /// Reads and checks the 40-byte V2 header at the start of `v2`.
    fn parse(v2: &[u8]) -> Result<Self, HistogramError> {
        let truncated = || HistogramError::Truncated {
            what: "V2 header",
            need: V2_HEADER_LEN,
            have: v2.len(),
        };
        if v2.len() < V2_HEADER_LEN {
            return Err(truncated());
        }
        let u32_at = |at| be_u32(v2, at).ok_or_else(truncated);
        let u64_at = |at| be_u64(v2, at).ok_or_else(truncated);
        let bad = |field, value: String, expected| HistogramError::Header {
            field,
            value,
            expected,
        };
        let cookie = u32_at(0)?;
        if cookie != V2_COOKIE {
            return Err(HistogramError::Cookie {
                what: "V2",
                found: cookie,
                expected: V2_COOKIE,
            });
        }
        let payload_len = u32_at(4)?;
        let present = v2.len() - V2_HEADER_LEN;
        if u64::from(payload_len) != present as u64 {
            return Err(HistogramError::Length {
                what: "V2 payload length",
                claimed: u64::from(payload_len),
                present,
            });
        }
        let offset = u32_at(8)?;
        if offset != 0 {
            return Err(bad("normalizingIndexOffset", offset.to_string(), "0"));
        }
        let digits = u32_at(12)?;
        if !(1..=MAX_SIGNIFICANT_DIGITS).contains(&digits) {
            return Err(bad("significantDigits", digits.to_string(), "1..=3"));
        }
        let lowest = u64_at(16)?;
        let highest = u64_at(24)?;
        if !(1..=MAX_HIGHEST / 2).contains(&lowest) {
            return Err(bad(
                "lowestDiscernibleValue",
                lowest.to_string(),
                "1 ..= half the highest accepted (3,600,000,000)",
            ));
        }
        if !(2 * lowest..=MAX_HIGHEST).contains(&highest) {
            return Err(bad(
                "highestTrackableValue",
                highest.to_string(),
                "2 × lowest ..= 7,200,000,000 (2 h in µs)",
            ));
        }
        let ratio = f64::from_bits(u64_at(32)?);
        if ratio.to_bits() != 1.0f64.to_bits() {
            return Err(bad(
                "integerToDoubleConversionRatio",
                ratio.to_string(),
                "1.0",
            ));
        }
        Ok(Self {
            digits: u8::try_from(digits).expect("checked ≤ 3 above; this is a bug"),
            lowest,
            highest,
        })
    }
}

/// Walks the count array as hdrhistogram will (zig-zag LEB128, at most 9 bytes a number;
/// a negative number is a run of zero counts) and returns the total count. Refuses a count or
/// zero run that reaches past the `len` counts the header's bounds give, and counts that add up
/// to more than [`MAX_COUNT`].
fn check_counts(mut payload: &[u8], len: usize) -> Result<u64, HistogramError> {
    let (mut index, mut total) = (0usize, 0u64);
    while !payload.is_empty() {
        let (zig_zag, used) =
            varint(payload).ok_or(HistogramError::Counts("the last number is truncated"))?;
        payload = &payload[used..];
        let value = ((zig_zag >> 1) as i64) ^ -((zig_zag & 1) as i64);
        if value < 0 {
            // i64::MIN has no positive counterpart (hdrhistogram would overflow negating it).
            let zeros = value
                .checked_neg()
                .and_then(|z| usize::try_from(z).ok())
                .ok_or(HistogramError::Counts("a zero run is out of range"))?;
            index = index.checked_add(zeros).filter(|&end| end <= len).ok_or(
                HistogramError::Counts("a zero run reaches past the value range"),
            )?;
        } else {
            if index >= len {
                return Err(HistogramError::Counts(
                    "more counts than the value range holds",
                ));
            }
            total = total
                .checked_add(value.unsigned_abs())
                .filter(|&t| t <= MAX_COUNT)
                .ok_or(HistogramError::Counts(
                    "the counts add up to more than 2^63 - 1",
                ))?;
            index += 1;
        }
    }
    Ok(total)
}

/// One LEB128-64b9B number (7 bits a byte, high bit = more; the 9th byte carries 8 bits) and
/// the bytes it used; `None` when `bytes` ends inside it.
fn varint(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, &b) in bytes.iter().enumerate().take(9) {
        if i == 8 {
            return Some((value | (u64::from(b) << 56), 9));
        }
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

fn be_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let chunk = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes(chunk.try_into().ok()?))
}

fn be_u64(bytes: &[u8], at: usize) -> Option<u64> {
    let chunk = bytes.get(at..at.checked_add(8)?)?;
    Some(u64::from_be_bytes(chunk.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SplitMix64, seeded: reproducible random histograms and byte mutations.
    struct Rng(u64);

    impl Rng {
        fn new(seed: u64) -> Self {
            Self(seed)
        }

        fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        fn below(&mut self, n: u64) -> u64 {
            ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
        }
    }
    use std::io::Write as _;

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    /// `v2` wrapped as the runner wraps it: cookie, compressed length, zlib stream.
    fn envelope(v2: &[u8]) -> Vec<u8> {
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(v2).unwrap();
        let compressed = z.finish().unwrap();
        let mut out = COMPRESSED_COOKIE.to_be_bytes().to_vec();
        out.extend_from_slice(&(compressed.len() as u32).to_be_bytes());
        out.extend_from_slice(&compressed);
        out
    }

    /// A V2 header with the given fields, then `payload`.
    fn v2(payload_len: u32, digits: u32, lowest: u64, highest: u64, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&V2_COOKIE.to_be_bytes());
        out.extend_from_slice(&payload_len.to_be_bytes());
        out.extend_from_slice(&0u32.to_be_bytes());
        out.extend_from_slice(&digits.to_be_bytes());
        out.extend_from_slice(&lowest.to_be_bytes());
        out.extend_from_slice(&highest.to_be_bytes());
        out.extend_from_slice(&1.0f64.to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    /// A valid V2 encoding around `payload`, with the runner's bounds.
    fn runner_v2(payload: &[u8]) -> Vec<u8> {
        v2(payload.len() as u32, 3, 1, MAX_MICROS, payload)
    }

    /// The inflated V2 bytes of an encoding.
    fn inflated(encoded: &str) -> Vec<u8> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap();
        inflate(&bytes).unwrap()
    }

    fn sample_histogram() -> Histogram<u64> {
        let mut h = Histogram::new_with_bounds(1, MAX_MICROS, 3).unwrap();
        let mut rng = Rng::new(7);
        for _ in 0..10_000 {
            h.record(1 + rng.below(5_000_000)).unwrap();
        }
        h
    }

    #[test]
    fn a_valid_histogram_round_trips() {
        let h = sample_histogram();
        let back = decode(&encode(&h)).unwrap();
        assert_eq!(back, h);
        assert_eq!(
            (
                back.len(),
                back.min(),
                back.max(),
                back.value_at_quantile(0.99)
            ),
            (h.len(), h.min(), h.max(), h.value_at_quantile(0.99))
        );
        let empty = Histogram::<u64>::new_with_bounds(1, MAX_MICROS, 3).unwrap();
        assert_eq!(decode(&encode(&empty)).unwrap().len(), 0);
        let mut coarse = Histogram::<u64>::new_with_bounds(1, MAX_MICROS, 2).unwrap();
        coarse.record_n(1_234, 5).unwrap();
        assert_eq!(decode(&encode(&coarse)).unwrap(), coarse);
    }

    #[test]
    fn the_largest_valid_histogram_fits_the_inflate_cap() {
        let mut h = Histogram::<u64>::new_with_bounds(1, MAX_HIGHEST, 3).unwrap();
        assert_eq!(h.distinct_values(), 24_576);
        assert!(V2_HEADER_LEN + 9 * h.distinct_values() <= MAX_INFLATED_LEN);
        // Every count non-zero and as large as a total within MAX_COUNT allows (8-byte numbers).
        let count = MAX_COUNT / h.distinct_values() as u64;
        let mut value = 1;
        while value <= MAX_HIGHEST {
            h.record_n(value, count).unwrap();
            value = h.next_non_equivalent(value);
        }
        let encoded = encode(&h);
        let size = inflated(&encoded).len();
        println!(
            "largest histogram: {size} bytes inflated, {} of base64",
            encoded.len()
        );
        assert!(size > 150_000 && size <= MAX_INFLATED_LEN, "{size}");
        assert!(encoded.len() <= MAX_ENCODED_LEN);
        assert_eq!(decode(&encoded).unwrap().len(), h.len());
    }

    #[test]
    fn oversized_base64_is_refused_before_decoding() {
        let huge = "A".repeat(MAX_ENCODED_LEN + 1);
        assert!(matches!(
            decode(&huge),
            Err(HistogramError::TooLong { len, .. }) if len == MAX_ENCODED_LEN + 1
        ));
        assert!(matches!(
            decode("not base64!"),
            Err(HistogramError::Base64(_))
        ));
    }

    #[test]
    fn a_payload_claiming_4_gib_is_refused() {
        // hdrhistogram would allocate (and zero) a buffer of the claimed 4 GiB before reading.
        let claim = envelope(&v2(u32::MAX, 3, 1, MAX_MICROS, &[2]));
        let err = decode(&b64(&claim)).unwrap_err();
        assert!(
            matches!(
                err,
                HistogramError::Length {
                    claimed: 4_294_967_295,
                    present: 1,
                    ..
                }
            ),
            "{err}"
        );
        assert!(
            err.to_string()
                .contains("V2 payload length claims 4294967295 bytes"),
            "{err}"
        );
        // The compressed length field, too.
        let mut forged = envelope(&runner_v2(&[2]));
        forged[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            decode(&b64(&forged)),
            Err(HistogramError::Length {
                what: "compressed length",
                ..
            })
        ));
    }

    #[test]
    fn header_fields_outside_the_runners_are_refused() {
        let field = |bytes: Vec<u8>| match decode(&b64(&envelope(&bytes))) {
            Err(HistogramError::Header { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        let p = [2u8];
        assert_eq!(
            field(v2(1, 3, 1, u64::MAX / 2, &p)),
            "highestTrackableValue"
        );
        assert_eq!(
            field(v2(1, 3, 1, MAX_HIGHEST + 1, &p)),
            "highestTrackableValue"
        );
        assert_eq!(field(v2(1, 5, 1, MAX_MICROS, &p)), "significantDigits");
        assert_eq!(field(v2(1, 0, 1, MAX_MICROS, &p)), "significantDigits");
        assert_eq!(field(v2(1, 3, 0, MAX_MICROS, &p)), "lowestDiscernibleValue");
        assert_eq!(field(v2(1, 3, 1_000, 1_500, &p)), "highestTrackableValue");
        let mut offset = runner_v2(&p);
        offset[8..12].copy_from_slice(&1u32.to_be_bytes());
        assert_eq!(field(offset), "normalizingIndexOffset");
        let mut ratio = runner_v2(&p);
        ratio[32..40].copy_from_slice(&2.0f64.to_be_bytes());
        assert_eq!(field(ratio), "integerToDoubleConversionRatio");
        let mut nan = runner_v2(&p);
        nan[32..40].copy_from_slice(&f64::NAN.to_be_bytes());
        assert_eq!(field(nan), "integerToDoubleConversionRatio");
        // Other cookies, outside and inside.
        let plain = runner_v2(&p);
        assert!(matches!(
            decode(&b64(&plain)),
            Err(HistogramError::Cookie {
                what: "V2 + DEFLATE",
                ..
            })
        ));
        let mut inner = runner_v2(&p);
        inner[0] ^= 1;
        assert!(matches!(
            decode(&b64(&envelope(&inner))),
            Err(HistogramError::Cookie { what: "V2", .. })
        ));
    }

    #[test]
    fn count_arrays_that_do_not_fit_are_refused() {
        let counts = |payload: &[u8]| decode(&b64(&envelope(&runner_v2(payload))));
        // A zero run of i64::MIN (zig-zag u64::MAX): hdrhistogram would overflow negating it.
        assert!(matches!(counts(&[0xff; 9]), Err(HistogramError::Counts(_))));
        // A zero run past the 23,552 counts of 1 µs .. 1 h, then a count.
        let mut past = Vec::new();
        let mut n: u64 = (23_552u64 << 1) - 1; // zig-zag of -23,552
        while n >= 0x80 {
            past.push((n as u8) | 0x80);
            n >>= 7;
        }
        past.push(n as u8);
        assert!(counts(&past).is_ok(), "a run to the very end is fine");
        past.push(2); // a count of 1 beyond the end
        assert!(matches!(counts(&past), Err(HistogramError::Counts(_))));
        // Counts adding up past MAX_COUNT (each is i64::MAX: zig-zag u64::MAX - 1), and past u64.
        let mut big = vec![0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        assert_eq!(counts(&big).unwrap().len(), MAX_COUNT);
        big.push(2);
        assert!(matches!(counts(&big), Err(HistogramError::Counts(_))));
        big.extend_from_within(..9);
        big.extend_from_within(..9);
        assert!(matches!(counts(&big), Err(HistogramError::Counts(_))));
        // A number cut short.
        assert!(matches!(counts(&[0x80]), Err(HistogramError::Counts(_))));
    }

    #[test]
    fn a_deflate_bomb_stops_at_the_cap() {
        let bomb = runner_v2(&vec![0u8; 10 << 20]);
        let encoded = b64(&envelope(&bomb));
        assert!(encoded.len() < MAX_ENCODED_LEN, "{}", encoded.len());
        assert!(matches!(
            decode(&encoded),
            Err(HistogramError::Inflated { .. })
        ));
    }

    #[test]
    fn truncated_encodings_are_refused() {
        let encoded = encode(&sample_histogram());
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&encoded)
            .unwrap();
        for len in 0..bytes.len() {
            assert!(
                decode(&b64(&bytes[..len])).is_err(),
                "prefix of {len} bytes"
            );
        }
        // Cut inside the inflated bytes, re-compressed properly (past the zlib checksum).
        let v2 = inflated(&encoded);
        for len in (0..v2.len()).step_by(7) {
            assert!(
                decode(&b64(&envelope(&v2[..len]))).is_err(),
                "V2 prefix of {len} bytes"
            );
        }
    }

    #[test]
    fn random_and_mutated_bytes_never_panic() {
        let valid = inflated(&encode(&sample_histogram()));
        for seed in 0..3_000u64 {
            let mut rng = Rng::new(seed);
            let len = rng.below(160) as usize;
            let random: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
            assert!(decode(&b64(&random)).is_err());
            // Past the outer checks: a valid envelope of random bytes, and of a valid header
            // followed by random counts.
            let _ = decode(&b64(&envelope(&random)));
            let _ = decode(&b64(&envelope(&runner_v2(&random))));
            // A valid encoding with a few bytes changed.
            let mut mutated = valid.clone();
            for _ in 0..=rng.below(4) {
                let at = rng.below(mutated.len() as u64) as usize;
                mutated[at] = rng.next_u64() as u8;
            }
            if let Ok(h) = decode(&b64(&envelope(&mutated))) {
                assert!(h.distinct_values() <= 24_576);
            }
        }
    }
}
