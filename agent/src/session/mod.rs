//! The session: a state machine owned by one task, fed by card events and socket calls.
