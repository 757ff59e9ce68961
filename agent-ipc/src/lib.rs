//! The wire contract of the identity agent's local socket API (see `DESIGN.md` §4).
