//! The test bed shared by every end-to-end test.
