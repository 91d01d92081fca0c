#!/bin/sh
# Builds the Debian package of gitlab-mailgate: generates the man page from
# the clap definitions (examples/manpage.rs), then runs cargo deb with the
# metadata of Cargo.toml's [package.metadata.deb]. Extra arguments go to
# cargo deb. The last line of standard output is the path of the .deb.
set -eu

cd "$(dirname "$0")/.."

if ! cargo deb --version >/dev/null 2>&1; then
    echo "build-deb: installing cargo-deb" >&2
    cargo install cargo-deb --locked --version '^3.8' >&2
fi

# Progress goes to stderr so that stdout is only the path of the .deb.
cargo run --quiet --locked --example manpage -- target/man >&2
deb=$(cargo deb --locked "$@")
printf '%s\n' "$deb" | tail -n 1
