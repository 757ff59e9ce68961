//! Link options of the resident daemon.
//!
//! On Linux with glibc, `identity-agent` packs its relative relocations (`DT_RELR`, glibc
//! 2.36 and binutils 2.38 or later): the dynamic loader otherwise reads a 24-byte entry per
//! pointer to relocate at every start, over 400 KiB of the binary kept resident for nothing.
//! The executable stays position-independent (ASLR unchanged).

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" {
        println!("cargo:rustc-link-arg-bin=identity-agent=-Wl,-z,pack-relative-relocs");
    }
}
