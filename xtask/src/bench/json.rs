//! Checking a JSON file (what CI does with `bench --quick --json`).

use super::*;
use serde_json::Value;

/// Checks a `--json` file: every operation present, and for every backend
/// that was not skipped a median that is a number or null with a reason.
pub fn validate_json(text: &str) -> Result<(), String> {
    let j: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let Some(backends) = j["backends"].as_array() else {
        return Err("no backends".into());
    };
    let active: Vec<String> = backends
        .iter()
        .filter(|b| b["skipped"].is_null())
        .filter_map(|b| b["name"].as_str().map(str::to_string))
        .collect();
    if !active.iter().any(|b| b == "native") {
        return Err("native backend missing".into());
    }
    let Some(ops) = j["operations"].as_array() else {
        return Err("no operations".into());
    };
    for name in op_names() {
        let op = ops
            .iter()
            .find(|o| o["name"] == name)
            .ok_or_else(|| format!("operation {name} missing"))?;
        let results = op
            .get("results")
            .ok_or_else(|| format!("{name}: no results"))?;
        for b in &active {
            let r = results
                .get(b)
                .ok_or_else(|| format!("{name}: no entry for {b}"))?;
            match (r.get("median"), r.get("na")) {
                (Some(Value::Number(v)), Some(Value::Null)) if v.as_f64().is_some_and(|v| v >= 0.0) => {}
                (Some(Value::Null), Some(Value::String(_))) => {}
                other => {
                    return Err(format!(
                        "{name} under {b}: neither a number nor n/a with a reason: {other:?}"
                    ))
                }
            }
            if !r["samples"].as_array().is_some_and(|s| !s.is_empty()) {
                return Err(format!("{name} under {b}: no samples"));
            }
        }
        {
            // Native must always have a figure: the same binary on the host.
            let n = results.get("native").and_then(|r| r.get("median"));
            if !n.is_some_and(Value::is_number) {
                return Err(format!("{name}: no native figure"));
            }
        }
    }
    Ok(())
}
