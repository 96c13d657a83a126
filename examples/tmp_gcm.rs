use aes::Aes256Enc;
use aes::cipher::{Array, BlockCipherEncrypt, KeyInit};
use aes_gcm::AesGcm;
use aes_gcm::aead::AeadInOut;
use aes_gcm::aead::consts::U12;
use std::time::Instant;
type G = AesGcm<Aes256Enc, U12>;
fn main() {
    let key = [7u8; 32];
    let n = 200_000;
    let t = Instant::now();
    let mut acc = 0u8;
    for i in 0..n {
        let g = G::new((&[i as u8; 32]).into());
        let mut b = [0u8; 16];
        let _ = g.encrypt_inout_detached(&Array::from([0u8; 12]), b"", (&mut b[..0]).into());
        acc ^= b[0];
    }
    println!("AesGcm::new+empty: {} ns", t.elapsed().as_nanos() / n);
    let c = Aes256Enc::new((&key).into());
    let t = Instant::now();
    for i in 0..n {
        let mut b = [i as u8; 16];
        c.encrypt_block((&mut b).into());
        acc ^= b[0];
    }
    println!("one block: {} ns", t.elapsed().as_nanos() / n);
    let g = G::new((&key).into());
    for size in [0usize, 64, 1024, 16384] {
        let mut buf = vec![1u8; size];
        let t = Instant::now();
        for _ in 0..n {
            let tag = g
                .encrypt_inout_detached(&Array::from([1u8; 12]), b"aadaadaadaadaadaadaadaad", (&mut buf[..]).into())
                .unwrap();
            acc ^= tag[0];
        }
        println!("encrypt {size}: {} ns", t.elapsed().as_nanos() / n);
    }
    println!("{acc}");
}
