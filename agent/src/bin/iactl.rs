//! `iactl`: the command line over the agent's socket API.

fn main() {
    unimplemented!("ipc helper")
}
