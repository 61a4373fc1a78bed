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

/// Reads what `f64_value` writes: a number, "inf" / "-inf", or null (NaN).
pub fn de_f64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(de_opt_f64(d)?.unwrap_or(f64::NAN))
}

/// Reads what `opt_f64` writes: a number, "inf" / "-inf", or null (None).
pub fn de_opt_f64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Num {
        N(f64),
        S(String),
    }
    match <Option<Num> as serde::Deserialize>::deserialize(d)? {
        None => Ok(None),
        Some(Num::N(v)) => Ok(Some(v)),
        Some(Num::S(s)) => match s.as_str() {
            "inf" => Ok(Some(f64::INFINITY)),
            "-inf" => Ok(Some(f64::NEG_INFINITY)),
            other => {
                Err(serde::de::Error::custom(format!("expected a number, \"inf\" or \"-inf\", found \"{other}\"")))
            }
        },
    }
}
