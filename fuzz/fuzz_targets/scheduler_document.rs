//! A scheduler document as the management API receives it: parsing, validation, version
//! and duration parsing must never panic, and a valid document survives a JSON round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use maestro_core::Scheduler;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = maestro_core::time::parse_duration(text);
        let _ = text.parse::<maestro_core::Version>();
        let _ = maestro_core::validation::parse_max_surge(text);
    }
    let Ok(scheduler) = serde_json::from_slice::<Scheduler>(data) else {
        return;
    };
    if scheduler.validate().is_ok() {
        let encoded = serde_json::to_vec(&scheduler).expect("a parsed scheduler encodes");
        let again: Scheduler =
            serde_json::from_slice(&encoded).expect("an encoded scheduler parses");
        assert_eq!(
            again, scheduler,
            "JSON round trip changed a valid scheduler"
        );
    }
});
