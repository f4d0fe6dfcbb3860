//! The `__<key>_numeric` companion of a decimal: its exact text as a `Decimal128(32, 6)`
//! (docs/LOSSLESS.md, "Numbers and decimals"). Worked on the digits of the text, never through
//! `f64`, so `0.1 + 0.2` sums exactly in every engine; digits past the sixth after the point are
//! rounded half to even, and a value too large for 32 digits has no companion.

use super::{NUMERIC_PRECISION, NUMERIC_SCALE};

/// The decimal's value times 10^6, rounded half to even; `None` when `text` is not a JSON number
/// or the value needs more than 32 digits.
pub fn scaled_decimal(text: &str) -> Option<i128> {
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
    fn non_numbers_have_no_value() {
        for text in ["", "-", "1.", ".5", "1e", "1e+", "abc", "1.5x", "0x10", "1,5"] {
            assert_eq!(scaled_decimal(text), None, "{text:?}");
        }
    }
}
