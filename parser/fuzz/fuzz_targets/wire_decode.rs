//! Any message body is a batch the parser must survive: `Batch::decode` may reject it (the parser
//! dead-letters it and counts it), never panic; a body it accepts must be fully walkable.
#![no_main]

libfuzzer_sys::fuzz_target!(|body: &[u8]| {
    if let Ok(batch) = wire::Batch::decode(body) {
        let _ = batch.id();
        for packet in batch.packets() {
            assert!(packet.data.len() <= body.len());
        }
    }
});
