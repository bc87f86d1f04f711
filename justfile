# Convenience recipes; every one is a plain cargo command (see README.md).

# Run the demo.
demo:
    cargo run -p tollgate -- demo

# Run the whole test suite (what CI runs after fmt and clippy).
test:
    cargo test --workspace

# Everything CI does.
ci:
    bash .ci/run

# Build the example functions and test guests to Wasm components.
guests:
    cd functions && cargo build --release --target wasm32-wasip2 --target-dir ../target/guests

# Per-connection benchmark of the function runtime.
bench:
    cargo bench -p tollgate-function --bench per_connection
    cargo bench -p tollgate-kvs --bench lookup
    cargo bench -p tollgate-x509 --bench parse

lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings
