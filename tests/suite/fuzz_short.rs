//! A short run of every fuzz target (the long runs are `examples/fuzz.rs`
//! and `fuzz/`): no generated input may panic.

#[path = "../../fuzz/generate.rs"]
mod generate;
use generate::{run, TARGETS};

#[test]
fn no_generated_input_panics() {
    for target in &TARGETS {
        if let Err(input) = run(target, 20_000, 0x5eed) {
            panic!(
                "{} panicked on {:?}",
                target.name,
                String::from_utf8_lossy(&input)
            );
        }
        println!("{}: 20000 cases, 0 panics", target.name);
    }
}
