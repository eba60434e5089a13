#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| runtime_common::web::fuzzing::web_request(data));
