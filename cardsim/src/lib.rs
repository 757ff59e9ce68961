//! A virtual PIV smartcard.
