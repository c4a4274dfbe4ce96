//! Any bytes a probe may send: decoding must refuse or succeed, never panic or run away; whatever
//! decodes must merge and render through every view without panicking either. The path itself is
//! `scopehub::collector::fuzzing::decode_merge_render`, which `make test` also runs over the saved
//! corpus.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    scopehub::collector::fuzzing::decode_merge_render(data);
});
