#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tenzip_fuzz::kv_pages(data));
