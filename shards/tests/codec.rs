//! Codec properties: every type's layout tiles its message exactly, and decode and encode are
//! inverse for every byte pattern of every type.

use proptest::prelude::*;
use shards::itch::{
    decode, message_len, DecodeError, Header, OwnedMessage, ALL_TYPES, LEN_BY_TYPE,
};

const SPEC_LENGTHS: &str =
    "S 12, R 39, H 25, Y 20, L 26, V 35, W 12, K 28, J 35, h 21, A 36, F 40, \
    E 31, C 36, X 23, D 19, U 35, P 44, Q 40, B 19, I 50, N 20, O 48";

#[test]
fn lengths_match_the_spec_table() {
    let mut n = 0;
    for item in SPEC_LENGTHS.split(',') {
        let mut it = item.split_whitespace();
        let tag = it.next().unwrap().as_bytes()[0];
        let len: usize = it.next().unwrap().parse().unwrap();
        assert_eq!(message_len(tag), Some(len), "{}", tag as char);
        assert_eq!(LEN_BY_TYPE[tag as usize] as usize, len);
        n += 1;
    }
    assert_eq!(n, 23);
    assert_eq!(ALL_TYPES.len(), 23);
    assert_eq!(
        (0..=255u8).filter(|t| message_len(*t).is_some()).count(),
        23
    );
}

#[test]
fn fields_tile_every_message_exactly() {
    for &tag in ALL_TYPES {
        let mut at = Header::LEN;
        for f in OwnedMessage::fields(tag).unwrap() {
            assert_eq!(
                f.offset, at,
                "{} field {} starts where the last ended",
                tag as char, f.name
            );
            at += f.size;
        }
        assert_eq!(
            at,
            message_len(tag).unwrap(),
            "{} fields end at the length",
            tag as char
        );
    }
}

fn any_message_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::sample::select(ALL_TYPES).prop_flat_map(|tag| {
        let len = message_len(tag).unwrap();
        prop::collection::vec(any::<u8>(), len - 1).prop_map(move |mut rest| {
            rest.insert(0, tag);
            rest
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn encode_of_decode_is_identity(bytes in any_message_bytes()) {
        let owned = decode(&bytes).unwrap().to_owned();
        let mut out = Vec::new();
        owned.encode(&mut out);
        prop_assert_eq!(&out, &bytes);
        // ... and so decode(encode(m)) == m for every m the bytes can express.
        prop_assert_eq!(decode(&out).unwrap().to_owned(), owned);
        let mut framed = Vec::new();
        owned.encode_framed(&mut framed);
        prop_assert_eq!(u16::from_be_bytes([framed[0], framed[1]]) as usize, bytes.len());
        prop_assert_eq!(&framed[2..], &bytes[..]);
    }

    #[test]
    fn wrong_lengths_are_rejected(bytes in any_message_bytes(), cut in 1usize..8) {
        let short = &bytes[..bytes.len().saturating_sub(cut).max(1)];
        let is_bad_length = matches!(decode(short), Err(DecodeError::BadLength { .. }));
        prop_assert!(is_bad_length);
        let mut long = bytes.clone();
        long.push(0);
        let is_bad_length = matches!(decode(&long), Err(DecodeError::BadLength { .. }));
        prop_assert!(is_bad_length);
    }
}

#[test]
fn unknown_and_empty_are_errors_not_panics() {
    assert_eq!(decode(&[]), Err(DecodeError::Empty));
    for t in (0..=255u8).filter(|t| message_len(*t).is_none()) {
        assert_eq!(decode(&[t; 40]), Err(DecodeError::UnknownType(t)));
    }
}
