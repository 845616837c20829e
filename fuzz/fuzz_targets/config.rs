//! Configuration parsing: arbitrary UTF-8 gives a Config or an error, and an
//! accepted Config is valid.

#![no_main]

use libfuzzer_sys::fuzz_target;
use postfix_agentx::config::Config;

fuzz_target!(|text: &str| {
    if let Ok(config) = Config::from_toml(text, "fuzz.toml") {
        config
            .validate()
            .expect("from_toml returns only valid configs");
        config.oid_root().expect("a valid config has an OID root");
    }
});
