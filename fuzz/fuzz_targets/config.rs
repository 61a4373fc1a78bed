#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| depthprobe_config::fuzz::config(data));
