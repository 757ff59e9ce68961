//! Every message that crosses the socket: requests, replies, events and the types they carry.
//!
//! One JSON object per line. A request is `{"id":7,"method":"status"}` (with `"params":{…}` for
//! the methods that take some); its reply is `{"id":7,"result":…}` or
//! `{"id":7,"error":{"code":"wrong_pin","message":"…","data":{…}}}`; after `subscribe` the
//! agent also sends events, `{"event":"card_removed","data":{…}}`.

/// The protocol version this crate speaks; `hello` carries it and the agent refuses others.
pub const PROTOCOL_VERSION: u32 = 1;

/// The longest line either side may send, newline excluded.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

mod cards;
mod errors;
mod events;
mod operations;
mod replies;
mod requests;
mod session;
mod status;

pub use cards::*;
pub use errors::*;
pub use events::*;
pub use operations::*;
pub use replies::*;
pub use requests::*;
pub use session::*;
pub use status::*;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holders_are_named_for_people_and_identified_for_programs() {
        let card = crate::fixtures::card();
        let text = serde_json::to_string(&card).unwrap();
        assert!(
            text.contains(r#""holder":"Alex Example","holder_id":"8c6f4f38-"#),
            "{text}"
        );
        // From an agent that does not send the user id yet.
        let older: CardStatus = serde_json::from_str(
            r#"{"serial":null,"card_type":"PIV","atr":"3B","piv":true,"holder":"Alex Example","expires_on":null,"days_left":null,"expired":false}"#,
        )
        .unwrap();
        assert_eq!(older.holder_id, None);

        // From a service that does not give the holder's name.
        let details: CardDetails = serde_json::from_str(
            r#"{"serial":"FEDCBA9876543210","card_type":"NHS CIS","holder_id":"8c6f4f38-3d0e-4b59-9a52-2b1f0f0c6a11","issued_on":"2017-11-21","certs_expire":null,"cancelled_on":null,"status":"Active","expired":false,"renewals_used":0,"capacity":10}"#,
        )
        .unwrap();
        assert_eq!(details.holder_name, None);
    }

    #[test]
    fn shapes_on_the_wire() {
        let r: Request = serde_json::from_str(r#"{"id":7,"method":"status"}"#).unwrap();
        assert_eq!(r.call, Call::Status);
        let r: Request =
            serde_json::from_str(r#"{"id":8,"method":"login","params":{"reader":"R"}}"#).unwrap();
        assert_eq!(
            r.call,
            Call::Login(LoginParams {
                reader: Some("R".into())
            })
        );
        let reply = Reply {
            id: Some(7),
            outcome: Outcome::Error(
                ErrorObject::new(ErrorCode::WrongPin, "wrong")
                    .with_data(serde_json::json!({"tries_left":2})),
            ),
        };
        let text = serde_json::to_string(&reply).unwrap();
        assert_eq!(
            text,
            r#"{"id":7,"error":{"code":"wrong_pin","message":"wrong","data":{"tries_left":2}}}"#
        );
        let back: ServerMessage = serde_json::from_str(&text).unwrap();
        assert_eq!(back, ServerMessage::Reply(reply));
        let ev = Event::CardRemoved {
            reader: "R".into(),
            serial: None,
        };
        let text = serde_json::to_string(&ev).unwrap();
        assert_eq!(
            text,
            r#"{"event":"card_removed","data":{"reader":"R","serial":null}}"#
        );
        assert_eq!(
            serde_json::from_str::<ServerMessage>(&text).unwrap(),
            ServerMessage::Event(ev)
        );
        let ok: ServerMessage =
            serde_json::from_str(r#"{"id":1,"result":{"subscribed":true}}"#).unwrap();
        assert!(matches!(
            ok,
            ServerMessage::Reply(Reply {
                id: Some(1),
                outcome: Outcome::Result(_)
            })
        ));
        assert!(serde_json::from_str::<Request>(r#"{"id":1,"method":"nope"}"#).is_err());
    }
}
