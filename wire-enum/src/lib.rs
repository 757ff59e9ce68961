//! One macro for the enums the identity agent's two contracts (the socket API in `agent-ipc`, the
//! service's API in `cms-api`) send by name: each value's name is written once, beside the value,
//! and everything that reads or writes the name is made from it. Its own crate so that neither
//! contract depends on the other.
#![no_std]

/// Declares a fieldless enum with each variant's name (`Renew = "renew"`), and with it: `ALL`
/// (every variant, in declaration order), `as_str`, `Display` (the name), and `Serialize` and
/// `Deserialize` by the same names (the calling crate depends on `serde`). Followed by
/// `struct Unknown("phrase");`, also `FromStr` (the name back, or that error type holding what
/// was not a name, whose message is the rejected text debug-quoted and then the phrase). The
/// enum's own attributes must derive at least `Clone` and `Copy`.
#[macro_export]
macro_rules! wire_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $wire:literal, )+
        }
        $(
            $(#[$umeta:meta])*
            $uvis:vis struct $unknown:ident($what:literal);
        )?
    ) => {
        $(#[$meta])*
        #[derive(::serde::Serialize, ::serde::Deserialize)]
        $vis enum $name {
            $( $(#[$vmeta])* #[serde(rename = $wire)] $variant, )+
        }
        impl $name {
            /// Every value, in declaration order.
            pub const ALL: [$name; [$($wire),+].len()] = [$(Self::$variant),+];

            /// The value's name on the wire and in storage.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( Self::$variant => $wire, )+
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        $(
            $(#[$umeta])*
            #[derive(Debug, Clone, PartialEq, Eq)]
            $uvis struct $unknown(pub String);

            impl ::std::fmt::Display for $unknown {
                fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                    write!(f, "{:?} {}", self.0, $what)
                }
            }

            impl ::std::error::Error for $unknown {}

            impl ::std::str::FromStr for $name {
                type Err = $unknown;

                fn from_str(s: &str) -> Result<Self, Self::Err> {
                    Self::ALL
                        .into_iter()
                        .find(|value| value.as_str() == s)
                        .ok_or_else(|| $unknown(s.to_owned()))
                }
            }
        )?
    };
}
