//! BER-TLV as PIV uses it: tags of one to three bytes, definite lengths of up to three bytes.

use thiserror::Error;

/// A TLV that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TlvError {
    /// The input ended inside a tag, a length or a value.
    #[error("TLV truncated")]
    Truncated,
    /// A length form PIV does not use (indefinite, or more than three length bytes).
    #[error("unsupported TLV length encoding")]
    BadLength,
    /// A tag longer than three bytes.
    #[error("TLV tag too long")]
    BadTag,
}

/// One parsed element, borrowing its value from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tlv<'a> {
    /// The tag, big-endian (`0x5FC105`, `0x7F49`, `0x53`).
    pub tag: u32,
    /// The value bytes.
    pub value: &'a [u8],
}

/// Appends the tag, its length and `value` to `out`.
pub fn push(out: &mut Vec<u8>, tag: u32, value: &[u8]) {
    push_tag(out, tag);
    push_len(out, value.len());
    out.extend_from_slice(value);
}

/// Returns `tag`, length and `value` as a new buffer.
pub fn encode(tag: u32, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len() + 6);
    push(&mut out, tag, value);
    out
}

/// Appends a tag in as many bytes as it needs.
pub fn push_tag(out: &mut Vec<u8>, tag: u32) {
    if tag > 0xFFFF {
        out.push((tag >> 16) as u8);
    }
    if tag > 0xFF {
        out.push((tag >> 8) as u8);
    }
    out.push(tag as u8);
}

/// Appends a definite length in its shortest form (at most three length bytes, as [`parse`]
/// reads: a length over `0xFFFFFF` is a bug of the caller and panics).
pub fn push_len(out: &mut Vec<u8>, len: usize) {
    match len {
        0..=0x7F => out.push(len as u8),
        0x80..=0xFF => out.extend_from_slice(&[0x81, len as u8]),
        0x100..=0xFFFF => out.extend_from_slice(&[0x82, (len >> 8) as u8, len as u8]),
        0x1_0000..=0xFF_FFFF => {
            out.extend_from_slice(&[0x83, (len >> 16) as u8, (len >> 8) as u8, len as u8])
        }
        _ => panic!("a TLV value of {len} bytes is longer than three length bytes can say"),
    }
}

/// Parses the first element of `input`, returning it and the bytes after it.
pub fn parse(input: &[u8]) -> Result<(Tlv<'_>, &[u8]), TlvError> {
    let (&first, mut rest) = input.split_first().ok_or(TlvError::Truncated)?;
    let mut tag = u32::from(first);
    if first & 0x1F == 0x1F {
        // Multi-byte tag: subsequent bytes while bit 8 is set, at most three bytes in all.
        loop {
            let (&b, r) = rest.split_first().ok_or(TlvError::Truncated)?;
            rest = r;
            if tag > 0xFFFF {
                return Err(TlvError::BadTag);
            }
            tag = (tag << 8) | u32::from(b);
            if b & 0x80 == 0 {
                break;
            }
        }
    }
    let (&l0, r) = rest.split_first().ok_or(TlvError::Truncated)?;
    rest = r;
    let len = match l0 {
        0..=0x7F => usize::from(l0),
        0x81..=0x83 => {
            let n = usize::from(l0 & 0x7F);
            if rest.len() < n {
                return Err(TlvError::Truncated);
            }
            let (bytes, r) = rest.split_at(n);
            rest = r;
            bytes
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
        }
        _ => return Err(TlvError::BadLength),
    };
    if rest.len() < len {
        return Err(TlvError::Truncated);
    }
    let (value, rest) = rest.split_at(len);
    Ok((Tlv { tag, value }, rest))
}

/// Iterates over consecutive elements; stops after the first error.
pub fn iter(input: &[u8]) -> impl Iterator<Item = Result<Tlv<'_>, TlvError>> {
    let mut rest = Some(input);
    std::iter::from_fn(move || {
        let input = rest.filter(|r| !r.is_empty())?;
        match parse(input) {
            Ok((tlv, r)) => {
                rest = Some(r);
                Some(Ok(tlv))
            }
            Err(e) => {
                rest = None;
                Some(Err(e))
            }
        }
    })
}

/// The value of the first element tagged `tag` among the consecutive elements of `input`.
pub fn find(input: &[u8], tag: u32) -> Result<Option<&[u8]>, TlvError> {
    for tlv in iter(input) {
        let tlv = tlv?;
        if tlv.tag == tag {
            return Ok(Some(tlv.value));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn encodes_multi_byte_tags_and_long_lengths() {
        assert_eq!(
            encode(0x5C, &[0x5F, 0xC1, 0x05]),
            [0x5C, 3, 0x5F, 0xC1, 0x05]
        );
        let v = vec![0xAB; 300];
        let e = encode(0x5FC105, &v);
        assert_eq!(&e[..6], &[0x5F, 0xC1, 0x05, 0x82, 0x01, 0x2C]);
        let (tlv, rest) = parse(&e).unwrap();
        assert_eq!((tlv.tag, tlv.value.len(), rest.len()), (0x5FC105, 300, 0));
        assert_eq!(encode(0x7F49, &[0; 0x80])[..4], [0x7F, 0x49, 0x81, 0x80]);
    }

    #[test]
    fn values_of_64_kib_or_more_take_three_length_bytes() {
        // The encoder wrote two length bytes here, dropping the top one (the fuzz target `tlv`
        // checks the encoder against the parser for values as long as its input).
        let v = vec![0x5A; 0x1_0001];
        let e = encode(0x53, &v);
        assert_eq!(&e[..5], &[0x53, 0x83, 0x01, 0x00, 0x01]);
        let (tlv, rest) = parse(&e).unwrap();
        assert_eq!((tlv.tag, tlv.value.len(), rest.len()), (0x53, 0x1_0001, 0));
    }

    #[test]
    fn finds_nested_values() {
        let mut inner = Vec::new();
        push(&mut inner, 0x80, &[7]);
        push(&mut inner, 0x81, &[1, 2]);
        let outer = encode(0x7C, &inner);
        let (t, _) = parse(&outer).unwrap();
        assert_eq!(find(t.value, 0x81).unwrap(), Some(&[1u8, 2][..]));
        assert_eq!(find(t.value, 0x82).unwrap(), None);
    }

    #[test]
    fn rejects_truncated_and_odd_input() {
        assert_eq!(parse(&[]), Err(TlvError::Truncated));
        assert_eq!(parse(&[0x53, 0x05, 1, 2]), Err(TlvError::Truncated));
        assert_eq!(parse(&[0x53, 0x80]), Err(TlvError::BadLength));
        assert_eq!(
            parse(&[0x5F, 0xFF, 0xFF, 0xFF, 0x01, 0]),
            Err(TlvError::BadTag)
        );
        assert_eq!(parse(&[0x53, 0x82, 0x01]), Err(TlvError::Truncated));
    }

    proptest! {
        #[test]
        fn round_trips(tag in prop_oneof![1u32..0x1F, 0x5FC101u32..0x5FC123, Just(0x7F49u32)],
                       value in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let e = encode(tag, &value);
            let (t, rest) = parse(&e).unwrap();
            prop_assert_eq!(t.tag, tag);
            prop_assert_eq!(t.value, &value[..]);
            prop_assert!(rest.is_empty());
        }

        #[test]
        fn never_panics_on_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = iter(&bytes).count();
        }
    }
}
