//! JSON has no NaN or infinity. Results write infinities (a CDNV with coincident class means) as
//! the strings "inf" / "-inf" and anything undefined as null, never NaN.

use serde::Serializer;

pub fn f64_value<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    if v.is_nan() {
        s.serialize_none()
    } else if v.is_infinite() {
        s.serialize_str(if *v > 0.0 { "inf" } else { "-inf" })
    } else {
        s.serialize_f64(*v)
    }
}

pub fn opt_f64<S: Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(x) => f64_value(x, s),
        None => s.serialize_none(),
    }
}

/// Text form used in CSV files: shortest round-trip decimal, "inf", or empty for undefined.
pub fn f64_text(v: f64) -> String {
    if v.is_nan() {
        String::new()
    } else if v.is_infinite() {
        if v > 0.0 {
            "inf".into()
        } else {
            "-inf".into()
        }
    } else {
        format!("{v}")
    }
}
