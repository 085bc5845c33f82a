//! Runs files through the checks of the fuzz targets without libFuzzer, printing what each
//! decoding entry point says about them. For reading a crash or a seed:
//!     cargo run --manifest-path fuzz/Cargo.toml --bin replay -- fuzz/seeds/image_decode/*.bin
//! A panic here is the same panic the fuzzer reported (`RUST_BACKTRACE=1` for where).

use std::fs;

use cosmic::image;

#[path = "../../common/mod.rs"]
mod common;

use common::types::{NativeState, State, V1State};

fn main() {
    for path in std::env::args().skip(1) {
        let bytes = fs::read(&path).expect("read input");
        println!("{path} ({} bytes)", bytes.len());
        match image::inspect(&bytes) {
            Ok(h) => println!(
                "  inspect: `{}` v{} {:?} header {} body {} table {:?}",
                h.type_name, h.type_version, h.encoding, h.header_len, h.body_len, h.versions
            ),
            Err(e) => println!("  inspect: error: {e}"),
        }
        let verdict = |r: Result<(), image::RestoreError>| match r {
            Ok(()) => "ok".to_owned(),
            Err(e) => {
                let mut text = format!("error: {e}");
                let mut source = std::error::Error::source(&e);
                while let Some(s) = source {
                    text.push_str(&format!(": {s}"));
                    source = s.source();
                }
                text
            }
        };
        println!(
            "  restore::<State>: {}",
            verdict(image::restore::<State>(&bytes).map(drop))
        );
        println!(
            "  restore::<V1State>: {}",
            verdict(image::restore::<V1State>(&bytes).map(drop))
        );
        println!(
            "  restore::<NativeState>: {}",
            verdict(image::restore::<NativeState>(&bytes).map(drop))
        );
        println!(
            "  restore_with_limits(small)::<State>: {}",
            verdict(image::restore_with_limits::<State>(&bytes, &common::SMALL_LIMITS).map(drop))
        );
        println!(
            "  restore_any: {}",
            verdict(image::restore_any(&bytes).map(drop))
        );
        common::check_all(&bytes);
        println!("  checks: passed");
    }
}
