//! The `__<key>_numeric` companion of a decimal: its exact text as a `Decimal128(32, 6)`
//! (docs/LOSSLESS.md, "Numbers and decimals"). Worked on the digits of the text, never through
//! `f64`, so `0.1 + 0.2` sums exactly in every engine; digits past the sixth after the point are
//! rounded half to even, and a value too large for 32 digits has no companion.

use super::{NUMERIC_PRECISION, NUMERIC_SCALE};

/// The decimal's value times 10^6, rounded half to even; `None` when `text` is not a JSON number
/// or the value needs more than 32 digits.
pub fn scaled_decimal(text: &str) -> Option<i128> {
    scaled_plain(text).or_else(|| scaled_any(text))
}

/// [`scaled_decimal`] of the numbers written as data nearly always are, `-?digits(.digits)?`
/// with at most [`PLAIN_DIGITS`] digits: read in one pass into a `u64` and scaled or rounded
/// there. [`scaled_any`] took 565 instructions a number, 1.1% of `--resources all` on 500 MB
/// of Bundles. `None` for anything else, which [`scaled_any`] then reads (a test holds the two
/// to the same answers).
fn scaled_plain(text: &str) -> Option<i128> {
    let bytes = text.as_bytes();
    let (negative, digits) = match bytes.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, bytes),
    };
    let (mut mantissa, mut count, mut fraction) = (0u64, 0usize, None);
    for (at, &byte) in digits.iter().enumerate() {
        match byte {
            b'0'..=b'9' => {
                mantissa = mantissa * 10 + u64::from(byte - b'0');
                count += 1;
            }
            b'.' if fraction.is_none() && at > 0 => fraction = Some(at + 1),
            _ => return None,
        }
        if count > PLAIN_DIGITS {
            return None;
        }
    }
    let fraction_digits = match fraction {
        Some(start) if start == digits.len() => return None,
        Some(start) => digits.len() - start,
        None if digits.is_empty() => return None,
        None => 0,
    };
    let scale = usize::from(NUMERIC_SCALE as u8);
    let scaled = match fraction_digits.checked_sub(scale) {
        None => i128::from(mantissa) * 10i128.pow((scale - fraction_digits) as u32),
        Some(dropped) => {
            let unit = 10u64.pow(dropped as u32);
            let (kept, rest) = (mantissa / unit, mantissa % unit);
            let round_up = rest > unit / 2 || (rest == unit / 2 && rest > 0 && kept % 2 == 1);
            i128::from(kept + u64::from(round_up))
        }
    };
    Some(if negative { -scaled } else { scaled })
}

/// The most digits [`scaled_plain`] reads: any 18 fit a `u64`, and scaled by 10^6 they stay
/// under the companion's 32 digits.
const PLAIN_DIGITS: usize = 18;

/// [`scaled_decimal`] of any text: E notation, and any number of digits.
fn scaled_any(text: &str) -> Option<i128> {
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(at) => (&unsigned[..at], parse_exponent(&unsigned[at + 1..])?),
        None => (unsigned, 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all_digits = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !all_digits(whole) || !all_digits(fraction) || mantissa.ends_with('.') {
        return None;
    }
    // value = digits * 10^power, the digits those of `whole` and then of `fraction`, read in
    // place (one of these per decimal value read: no allocation).
    let count = whole.len() + fraction.len();
    let digit = |at: usize| -> u8 {
        let byte = match at.checked_sub(whole.len()) {
            None => whole.as_bytes()[at],
            Some(in_fraction) => fraction.as_bytes()[in_fraction],
        };
        byte - b'0'
    };
    let power = exponent
        .checked_sub(fraction.len() as i64)?
        .checked_add(i64::from(NUMERIC_SCALE as u8))?;
    let first = (0..count).find(|&at| digit(at) != 0).unwrap_or(count);
    let significant = count - first;
    if significant == 0 {
        return Some(0);
    }
    let max_digits = i64::from(NUMERIC_PRECISION);
    // The digits kept are `first..kept_end`.
    let (kept_end, round_up) = if power >= 0 {
        if significant as i64 + power > max_digits {
            return None;
        }
        (count, false)
    } else {
        let dropped = power.unsigned_abs().min(u64::from(u32::MAX)) as usize;
        if dropped > significant {
            // Below half of the last kept unit.
            (first, false)
        } else {
            let kept_end = count - dropped;
            let last_even = kept_end == first || digit(kept_end - 1) % 2 == 0;
            let round_up = match digit(kept_end).cmp(&5) {
                std::cmp::Ordering::Greater => true,
                std::cmp::Ordering::Less => false,
                std::cmp::Ordering::Equal => (kept_end + 1..count).any(|at| digit(at) != 0) || !last_even,
            };
            (kept_end, round_up)
        }
    };
    if (kept_end - first) as i64 > max_digits {
        return None;
    }
    let mut value: i128 = 0;
    for at in first..kept_end {
        value = value * 10 + i128::from(digit(at));
    }
    let exponent = if power > 0 { power as u32 } else { 0 };
    value = value.checked_mul(10i128.checked_pow(exponent)?)?;
    if round_up {
        value += 1;
    }
    if value >= 10i128.pow(u32::from(NUMERIC_PRECISION)) {
        return None;
    }
    Some(if negative { -value } else { value })
}

/// The exponent of a number in E notation, saturated far outside any value that can fit.
fn parse_exponent(text: &str) -> Option<i64> {
    let (negative, digits) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Beyond 12 digits (after leading zeros) it is far past any value a Decimal128 holds.
    let significant = digits.trim_start_matches('0');
    let magnitude = if significant.len() > 12 {
        1 << 40
    } else {
        significant.parse::<i64>().unwrap_or(0)
    };
    Some(if negative { -magnitude } else { magnitude })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_scale_exactly() {
        assert_eq!(scaled_decimal("1.50"), Some(1_500_000));
        assert_eq!(scaled_decimal("1e2"), Some(100_000_000));
        assert_eq!(scaled_decimal("1E+2"), Some(100_000_000));
        assert_eq!(scaled_decimal("-0.0"), Some(0));
        assert_eq!(scaled_decimal("0"), Some(0));
        assert_eq!(scaled_decimal("-12.345"), Some(-12_345_000));
        assert_eq!(scaled_decimal("2.5e-3"), Some(2_500));
        assert_eq!(scaled_decimal("0.000001234"), Some(1));
        assert_eq!(scaled_decimal("1e-300"), Some(0));
        assert_eq!(
            scaled_decimal("123456789012345678901234567"),
            None,
            "27 integer digits"
        );
        assert_eq!(
            scaled_decimal("123456789012345678901234567e-1"),
            Some(12_345_678_901_234_567_890_123_456_700_000)
        );
        assert_eq!(
            scaled_decimal("12345678901234567890123456.5"),
            Some(12_345_678_901_234_567_890_123_456_500_000)
        );
        assert_eq!(scaled_decimal("1e999999999999999999999"), None);
    }

    #[test]
    fn seventh_digit_rounds_half_to_even() {
        assert_eq!(scaled_decimal("0.0000005"), Some(0));
        assert_eq!(scaled_decimal("0.0000015"), Some(2));
        assert_eq!(scaled_decimal("0.00000150001"), Some(2));
        assert_eq!(scaled_decimal("0.0000025"), Some(2));
        assert_eq!(scaled_decimal("0.0000026"), Some(3));
        assert_eq!(scaled_decimal("-0.0000035"), Some(-4));
        assert_eq!(scaled_decimal("0.99999999"), Some(1_000_000));
        // Every digit dropped: the first one decides, then the ones after it.
        assert_eq!(scaled_decimal("5e-7"), Some(0));
        assert_eq!(scaled_decimal("51e-8"), Some(1));
        assert_eq!(scaled_decimal("0.00000049999"), Some(0));
        assert_eq!(scaled_decimal("-000.0000006"), Some(-1));
        assert_eq!(scaled_decimal("9.9999995"), Some(10_000_000));
        // A tie with no digit kept: rounds to the even zero.
        assert_eq!(scaled_decimal("0.0000000005e3"), Some(0));
    }

    #[test]
    fn plain_numbers_read_in_one_pass_as_by_the_general_way() {
        let texts = [
            "0",
            "-0",
            "7",
            "007",
            "1.5",
            "-1.50",
            "0.0000005",
            "0.0000015",
            "0.0000025",
            "0.00000150001",
            "0.99999999",
            "9.9999995",
            "123456789012345678",
            "1234567890123456789",
            "12345678901234567.8",
            "0.123456789012345678",
            "-999999999999999999",
            "1.",
            ".5",
            "-",
            "",
            "1..2",
            "1.2.3",
            "-1-2",
            "+1",
            "1e2",
            "1,5",
            " 1",
            "1 ",
        ];
        for text in texts {
            assert_eq!(
                scaled_plain(text).or_else(|| scaled_any(text)),
                scaled_any(text),
                "{text:?}"
            );
        }
        assert_eq!(scaled_plain("69.3"), Some(69_300_000));
        assert_eq!(scaled_plain("1e2"), None, "E notation is the general way's");
        assert_eq!(scaled_plain("1234567890123456789"), None, "19 digits");
    }

    proptest::proptest! {
        /// Numbers of up to 20 digits with the point anywhere (and texts near them): the one
        /// pass, where it answers, answers as the general way does.
        #[test]
        fn plain_numbers_scale_as_any(
            negative in proptest::bool::ANY,
            digits in "[0-9]{0,20}",
            point in proptest::option::of(0usize..22),
            tail in proptest::sample::select(vec!["", "", "", "5", "e1", ".", "x"]),
        ) {
            let mut text = String::from(if negative { "-" } else { "" });
            match point.filter(|&at| at <= digits.len()) {
                Some(at) => text.push_str(&format!("{}.{}", &digits[..at], &digits[at..])),
                None => text.push_str(&digits),
            }
            text.push_str(tail);
            if let Some(value) = scaled_plain(&text) {
                proptest::prop_assert_eq!(Some(value), scaled_any(&text), "{:?}", text);
            }
        }
    }

    #[test]
    fn non_numbers_have_no_value() {
        for text in ["", "-", "1.", ".5", "1e", "1e+", "abc", "1.5x", "0x10", "1,5"] {
            assert_eq!(scaled_decimal(text), None, "{text:?}");
        }
    }
}
