#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tenzip_fuzz::block_decode(data));
