//! `testbed` binary: starts the test world.

fn main() {
    println!("testbed");
}
