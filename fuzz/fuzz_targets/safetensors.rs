#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| depthprobe::fuzz_entry::safetensors(data));
