//! `identity-agent`: wires the owners together.

fn main() {
    unimplemented!("session work")
}
