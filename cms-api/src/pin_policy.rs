//! The passcode policy of the Registration Authority procedure: four to eight numeric
//! characters, and no obvious sequences (1234, 9999, 11111 …). A rule of the procedure, not of
//! any service: checked wherever a new PIN is chosen (the agent's repair, the service's
//! issuing).

use thiserror::Error;

/// A PIN the policy refuses.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PinPolicyError {
    /// Not 4 to 8 characters, or not all digits.
    #[error("a passcode is 4 to 8 digits")]
    Format,
    /// One digit repeated (`9999`, `11111`).
    #[error("a passcode cannot be one digit repeated")]
    Repeated,
    /// A run up or down (`1234`, `8765`, `7890`).
    #[error("a passcode cannot be a sequence of consecutive digits")]
    Sequence,
}

/// Checks a PIN chosen by a card holder against the policy.
pub fn check_pin(pin: &str) -> Result<(), PinPolicyError> {
    let digits: Vec<u8> = pin.bytes().collect();
    if !(4..=8).contains(&digits.len()) || !digits.iter().all(u8::is_ascii_digit) {
        return Err(PinPolicyError::Format);
    }
    if digits.windows(2).all(|w| w[0] == w[1]) {
        return Err(PinPolicyError::Repeated);
    }
    let step = |w: &[u8]| (i16::from(w[1]) - i16::from(w[0]) + 10) % 10;
    let first = step(&digits[..2]);
    if (first == 1 || first == 9) && digits.windows(2).all(|w| step(w) == first) {
        return Err(PinPolicyError::Sequence);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_procedures_examples_are_refused_and_ordinary_pins_pass() {
        for bad in ["1234", "9999", "11111", "87654321", "7890", "0987", "123"] {
            assert!(check_pin(bad).is_err(), "{bad}");
        }
        assert_eq!(check_pin("12a4"), Err(PinPolicyError::Format));
        assert_eq!(check_pin("123456789"), Err(PinPolicyError::Format));
        for good in ["918273", "2580", "13579246", "1123"] {
            assert_eq!(check_pin(good), Ok(()), "{good}");
        }
    }
}
