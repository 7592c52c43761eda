#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rail_fuzz::operations(data));
