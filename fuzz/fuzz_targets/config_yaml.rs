//! The config and services-file loaders never panic on any text: every
//! input is a valid configuration or an error naming what is wrong. What
//! loads prints back (check-config's output) to YAML that loads to the same
//! value.
#![no_main]

use herald::config::Config;
use herald::services::ServicesFile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    match Config::from_yaml(text) {
        Ok(config) => {
            let again = Config::from_yaml(&config.to_yaml()).expect("printed config loads");
            assert_eq!(again, config);
        }
        Err(error) => {
            let _ = error.to_string();
        }
    }
    match ServicesFile::from_yaml(text) {
        Ok(file) => {
            let again = ServicesFile::from_yaml(&file.to_yaml()).expect("printed file loads");
            assert_eq!(again, file);
        }
        Err(error) => {
            let _ = error.problems();
        }
    }
});
