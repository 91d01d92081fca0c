//! Stable-toolchain fuzz driver for the entry points in
//! `gitlab_mailgate::fuzzing`, for toolchains without libFuzzer (the
//! generator is `fuzz/generate.rs`).
//!
//! `cargo run --release --example fuzz -- TARGET [CASES] [SEED]`
//! TARGET: route | header | lmtp | all. Prints the count of cases run;
//! a panic (a bug) exits 1 with the offending input in hex.

#[path = "../fuzz/generate.rs"]
mod generate;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let which = args.get(1).map_or("all", String::as_str);
    let cases: u64 = args
        .get(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let seed: u64 = args
        .get(3)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x9e37_79b9_7f4a_7c15);
    let mut ran_any = false;
    for target in generate::TARGETS
        .iter()
        .filter(|t| which == "all" || which == t.name)
    {
        ran_any = true;
        let name = target.name;
        let started = std::time::Instant::now();
        if let Err(input) = generate::run(target, cases, seed) {
            let hex: String = input.iter().map(|b| format!("{b:02x}")).collect();
            eprintln!("{name}: panic on input {hex}");
            std::process::exit(1);
        }
        println!(
            "{name}: {cases} cases, 0 panics, {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
    if !ran_any {
        eprintln!("unknown target {which}: use route, header, lmtp or all");
        std::process::exit(2);
    }
}
