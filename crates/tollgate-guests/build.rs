//! Compiles the guest workspace (`functions/Cargo.toml`: the guest SDK, the
//! example functions and the hostile test guests) to `wasm32-wasip2`
//! components, so that the host crates can embed or load them.
//!
//! The guests are built by a nested `cargo build` into `target/guests`, a
//! target directory of their own (so the nested build never waits on the
//! outer one's lock). The `wasm32-wasip2` target is installed with rustup when
//! it is missing.

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// (environment variable, artifact file name)
const ARTIFACTS: &[(&str, &str)] = &[
    ("REVOCATION", "revocation.wasm"),
    ("SUBJECT_ALLOWLIST", "subject_allowlist.wasm"),
    ("IP_ALLOWLIST", "ip_allowlist.wasm"),
    ("INFINITE_LOOP", "guest_infinite_loop.wasm"),
    ("UNBOUNDED_ALLOC", "guest_unbounded_alloc.wasm"),
    ("DEEP_RECURSION", "guest_deep_recursion.wasm"),
    ("PANIC", "guest_panic.wasm"),
    ("CUSTOM_DATA_FLOOD", "guest_custom_data_flood.wasm"),
    ("CONSOLE_FLOOD", "guest_console_flood.wasm"),
    ("STDOUT_FLOOD", "guest_stdout_flood.wasm"),
    ("GUEST_ERROR", "guest_guest_error.wasm"),
    ("INSPECT", "guest_inspect.wasm"),
    ("COUNTER", "guest_counter.wasm"),
    ("REPLAY", "guest_replay.wasm"),
    ("KEEP_HANDLE", "guest_keep_handle.wasm"),
    ("SANDBOX_ESCAPE", "guest_sandbox_escape.wasm"),
    ("SLEEP", "guest_sleep.wasm"),
    ("WRONG_WORLD", "guest-wrong-world.wasm"),
];

const TARGET: &str = "wasm32-wasip2";

fn main() {
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest_dir
        .parent()
        .and_then(Path::parent)
        .expect("crates/tollgate-guests sits two levels below the workspace root")
        .to_path_buf();
    for dir in ["functions", "guest-sdk", "tests/guests", "wit"] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_DIR");

    let target_dir = match env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir).join("guests"),
        None => root.join("target").join("guests"),
    };

    ensure_target_installed();

    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    // Run from functions/ so that its .cargo/config.toml (guest link flags)
    // applies, as it does when a developer builds the guests by hand.
    cmd.current_dir(root.join("functions"))
        .args([
            "build",
            "--release",
            "--locked",
            "--target",
            TARGET,
            "--manifest-path",
        ])
        .arg(root.join("functions").join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        // The outer build's flags and wrappers are for the host, not the guests.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("RUSTC_WRAPPER")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_LLVM_COV")
        .env_remove("LLVM_PROFILE_FILE")
        // Cargo parses a build script's stdout; keep the nested build's off it.
        .stdout(Stdio::null());
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("cannot run cargo to build the Wasm guests: {e}"));
    if !status.success() {
        panic!(
            "building the Wasm guests (functions/Cargo.toml, target {TARGET}) failed with {status}; \
             run `cargo build --release --target {TARGET} --manifest-path functions/Cargo.toml` to see why"
        );
    }

    let out = target_dir.join(TARGET).join("release");
    for (name, file) in ARTIFACTS {
        let path = out.join(file);
        if !path.is_file() {
            panic!("the guest build did not produce {}", path.display());
        }
        println!("cargo:rustc-env=TOLLGATE_GUEST_{name}={}", path.display());
    }
}

/// Installs the wasm32-wasip2 standard library with rustup when it is missing
/// (RUSTUP_AUTO_INSTALL may be off, so nothing installs it implicitly).
fn ensure_target_installed() {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let libdir = Command::new(&rustc)
        .args(["--print", "target-libdir", "--target", TARGET])
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    if libdir.is_some_and(|dir| dir.is_dir()) {
        return;
    }
    let status = Command::new("rustup")
        .args(["target", "add", TARGET])
        .stdout(Stdio::null())
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!("`rustup target add {TARGET}` failed with {s}; install the target by hand"),
        Err(e) => panic!(
            "the {TARGET} target is missing and rustup cannot be run ({e}); install the target by hand"
        ),
    }
}
