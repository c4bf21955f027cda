#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tenzip_fuzz::codec_round_trip(data));
