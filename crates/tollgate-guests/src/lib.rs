//! Compiled Wasm components of the example functions (`functions/`) and the
//! hostile test guests (`tests/guests/`), built by this crate's build script.
//!
//! Each guest is available as bytes (`*_WASM`, embedded in the binary that
//! uses it) and as the path of the built file (`*_PATH`, for tests that hand a
//! file to the CLI).

macro_rules! guests {
    ($($(#[$doc:meta])* $name:ident, $path:ident => $env:literal;)*) => {
        $(
            $(#[$doc])*
            pub const $name: &[u8] = include_bytes!(env!($env));
            $(#[$doc])*
            pub const $path: &str = env!($env);
        )*
    };
}

guests! {
    /// `functions/revocation`: deny leaves whose serial is in store `revoked`.
    REVOCATION_WASM, REVOCATION_PATH => "TOLLGATE_GUEST_REVOCATION";
    /// `functions/subject-allowlist`: allow listed SAN URIs, CNs and OUs.
    SUBJECT_ALLOWLIST_WASM, SUBJECT_ALLOWLIST_PATH => "TOLLGATE_GUEST_SUBJECT_ALLOWLIST";
    /// `functions/ip-allowlist`: allow client IPs in listed CIDR ranges.
    IP_ALLOWLIST_WASM, IP_ALLOWLIST_PATH => "TOLLGATE_GUEST_IP_ALLOWLIST";
    /// Test guest: spins forever.
    INFINITE_LOOP_WASM, INFINITE_LOOP_PATH => "TOLLGATE_GUEST_INFINITE_LOOP";
    /// Test guest: allocates until memory runs out.
    UNBOUNDED_ALLOC_WASM, UNBOUNDED_ALLOC_PATH => "TOLLGATE_GUEST_UNBOUNDED_ALLOC";
    /// Test guest: recurses until the stack overflows.
    DEEP_RECURSION_WASM, DEEP_RECURSION_PATH => "TOLLGATE_GUEST_DEEP_RECURSION";
    /// Test guest: panics.
    PANIC_WASM, PANIC_PATH => "TOLLGATE_GUEST_PANIC";
    /// Test guest: logs 1 MB of custom data.
    CUSTOM_DATA_FLOOD_WASM, CUSTOM_DATA_FLOOD_PATH => "TOLLGATE_GUEST_CUSTOM_DATA_FLOOD";
    /// Test guest: console lines without end.
    CONSOLE_FLOOD_WASM, CONSOLE_FLOOD_PATH => "TOLLGATE_GUEST_CONSOLE_FLOOD";
    /// Test guest: stdout lines without end.
    STDOUT_FLOOD_WASM, STDOUT_FLOOD_PATH => "TOLLGATE_GUEST_STDOUT_FLOOD";
    /// Test guest: returns an error (opens a store it is not associated with).
    GUEST_ERROR_WASM, GUEST_ERROR_PATH => "TOLLGATE_GUEST_GUEST_ERROR";
    /// Test guest: reports every field it can read on the console.
    INSPECT_WASM, INSPECT_PATH => "TOLLGATE_GUEST_INSPECT";
    /// Test guest: sleeps a minute before deciding.
    SLEEP_WASM, SLEEP_PATH => "TOLLGATE_GUEST_SLEEP";
    /// Test guest: counts its calls in a static and logs the count.
    COUNTER_WASM, COUNTER_PATH => "TOLLGATE_GUEST_COUNTER";
    /// Test guest: asks every question a replay asks again (and one it
    /// cannot, as the store tells it), reporting the answers.
    REPLAY_WASM, REPLAY_PATH => "TOLLGATE_GUEST_REPLAY";
    /// Test guest: keeps its first call's certificate handle in a static.
    KEEP_HANDLE_WASM, KEEP_HANDLE_PATH => "TOLLGATE_GUEST_KEEP_HANDLE";
    /// Test guest: reads a file and opens a socket (refused at load).
    SANDBOX_ESCAPE_WASM, SANDBOX_ESCAPE_PATH => "TOLLGATE_GUEST_SANDBOX_ESCAPE";
    /// Test guest: a WASI command component, not a connection function.
    WRONG_WORLD_WASM, WRONG_WORLD_PATH => "TOLLGATE_GUEST_WRONG_WORLD";
}
