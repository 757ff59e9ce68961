//! The reference Card Management Service (see `DESIGN.md` §5).
