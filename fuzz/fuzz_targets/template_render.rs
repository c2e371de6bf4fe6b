//! Template rendering: any template text with any JSON data renders or fails
//! with an error; it never panics.
#![no_main]

use aloop::host::tpl::Templates;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (template, json) = text.split_once('\u{0}').unwrap_or((text, "{\"name\": \"x\", \"items\": [1, 2]}"));
    let data: serde_json::Value = serde_json::from_str(json).unwrap_or(serde_json::Value::Null);
    let mut templates = Templates::default();
    let _ = templates.render_text("fuzz.md", template, &data);
});
