//! Micro-benchmark of sealing and opening one value: `cargo run --release --example seal_bench`.

use std::time::Instant;

use respseal::crypto::{self, Binding, KeyMaterial, KeyState, Keyring};

fn main() {
    let mut ring = Keyring::new();
    ring.insert(0x01020304, KeyState::Primary, Some(KeyMaterial::from_bytes([7; 32]))).expect("valid keyring");
    let binding = Binding::string(b"respseal", b"key:000000012345");
    for size in [1024usize, 16384] {
        let value = vec![b'x'; size];
        let n = 100_000;
        let t = Instant::now();
        let mut last = Vec::new();
        for _ in 0..n {
            last = crypto::seal(&ring, &binding, &value, 1_800_000_000).expect("seal");
        }
        let seal_ns = t.elapsed().as_nanos() / n as u128;
        let t = Instant::now();
        for _ in 0..n {
            let _ = crypto::open(&ring, &binding, &last, 1_800_000_000, None).expect("open");
        }
        let open_ns = t.elapsed().as_nanos() / n as u128;
        println!("{size} bytes: seal {seal_ns} ns, open {open_ns} ns");
    }
}
