//! The CMS's request decoding (`cms::api::decode_body`, what the API's body extractor runs):
//! JSON, an object, then the fields of each request type of the API. What decodes encodes to a
//! body that decodes to the same request; a refusal is `malformed_json` or `invalid_request`.
//!
//! Input: a byte choosing the request type, then the body.
#![no_main]

use cms::api::decode_body;
use cms::error::CmsError;
use cms_api::protocol::{
    CancelCardRequest, ChallengeAnswerRequest, ChallengeRequest, ConfirmRequest, CsrRequest,
    NewCardRequest, SelectRoleRequest, SessionRequest, StartOperationRequest, TicketRequest,
    WitnessRequest,
};
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;
use serde::Serialize;

fn check<T: Serialize + DeserializeOwned>(body: &[u8]) {
    match decode_body::<T>(body) {
        Ok(request) => {
            let encoded = serde_json::to_vec(&request).expect("a request encodes");
            let again: T = decode_body(&encoded).expect("an encoded request decodes");
            assert_eq!(
                serde_json::to_value(&again).unwrap(),
                serde_json::to_value(&request).unwrap()
            );
        }
        Err(CmsError::MalformedJson(_)) => {
            assert!(serde_json::from_slice::<serde_json::Value>(body).is_err())
        }
        Err(CmsError::InvalidRequest(_)) => {}
        Err(other) => panic!("decoding answered {other:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    match which % 11 {
        0 => check::<ChallengeRequest>(body),
        1 => check::<SessionRequest>(body),
        2 => check::<SelectRoleRequest>(body),
        3 => check::<TicketRequest>(body),
        4 => check::<NewCardRequest>(body),
        5 => check::<CancelCardRequest>(body),
        6 => check::<StartOperationRequest>(body),
        7 => check::<WitnessRequest>(body),
        8 => check::<ChallengeAnswerRequest>(body),
        9 => check::<CsrRequest>(body),
        _ => check::<ConfirmRequest>(body),
    }
});
