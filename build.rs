//! The shipped playbook and templates are built into the binary (`src/builtin.rs`). On stable
//! Rust `include_dir!` does not tell Cargo which files it read, so a change to them would not
//! rebuild the binary: these lines do.
fn main() {
    println!("cargo:rerun-if-changed=campaigns");
    println!("cargo:rerun-if-changed=templates");
}
