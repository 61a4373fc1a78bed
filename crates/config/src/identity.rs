//! What makes a run different: the keys of its config that differ from the defaults, as one
//! canonical text, and the hash a sweep puts in each run id (docs/experiments.md, "Run ids").
//!
//! Only keys away from their defaults enter it, in sorted order, each value written by this file
//! (not by the TOML library), so a key added later with a default, a reordered struct or a new
//! version of the TOML crate moves no id.

use crate::Config;

/// `section.key = value` for every key whose value differs from the default's, one per line,
/// sorted by key. A default config gives the empty text.
pub fn identity_text(cfg: &Config) -> String {
    let table = |c: &Config| match toml::Value::try_from(c).expect("the config serializes") {
        toml::Value::Table(t) => t,
        _ => unreachable!("a config serializes to a table"),
    };
    let (ours, defaults) = (table(cfg), table(&Config::default()));
    let mut lines = Vec::new();
    for (section, v) in &ours {
        // Where a run reports is not what it is.
        if section == "log" {
            continue;
        }
        let toml::Value::Table(keys) = v else { continue };
        let default_keys = defaults.get(section).and_then(|d| d.as_table());
        for (k, v) in keys {
            if default_keys.and_then(|d| d.get(k)) != Some(v) {
                lines.push(format!("{section}.{k} = {}", canonical(v)));
            }
        }
    }
    lines.sort();
    lines.iter().map(|l| format!("{l}\n")).collect()
}

/// The 32-bit hash of [`identity_text`], as in a run id (`depth4-seed1-873a8569`).
pub fn identity_hash(cfg: &Config) -> u32 {
    fnv1a(identity_text(cfg).as_bytes()) as u32
}

/// A value as identity text: integers in decimal, floats in Rust's shortest round-trip form,
/// strings quoted with `"` and `\` escaped, arrays as `[a, b]`, tables as `{k = v, …}` sorted.
fn canonical(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"")),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => format!("{f:?}"),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Datetime(d) => d.to_string(),
        toml::Value::Array(a) => format!("[{}]", a.iter().map(canonical).collect::<Vec<_>>().join(", ")),
        toml::Value::Table(t) => {
            let mut kv: Vec<String> = t.iter().map(|(k, v)| format!("{k} = {}", canonical(v))).collect();
            kv.sort();
            format!("{{{}}}", kv.join(", "))
        }
    }
}

/// 64-bit FNV-1a: a stable hash (Rust's own hasher may change between releases).
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(sets: &[&str]) -> Config {
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        Config::from_toml("", "test", &sets).unwrap()
    }

    /// The identity hashes of a small depth × seed grid of MNIST MLPs (and of a few single keys),
    /// pinned. `tests/sweep.rs` (`run_ids_are_pinned…`) plans the same grid in an ordinary build
    /// and checks the same numbers; this unit test is compiled with `TrainConfig::added_in_test`,
    /// a key that exists only in this crate's test build, at its default. Both passing is the
    /// rule at work: adding a key with a default moves no id.
    const PINNED: [(&[&str], u32); 6] = [
        (&[], 0x84222325),
        (&["model.depth=2", "train.seed=0", "train.epochs=4"], 0x9d4f069b),
        (&["model.depth=2", "train.seed=1", "train.epochs=4"], 0x6c253ff4),
        (&["model.depth=3", "train.seed=0", "train.epochs=4"], 0x01b3f2f4),
        (&["probe.eps=[0.01, 0.05]"], 0xe92571fc),
        (&["data.dataset=cifar10", "model.arch=conv", "train.lr=0.05"], 0xc9e92db8),
    ];

    #[test]
    fn a_key_added_with_its_default_moves_no_id() {
        // This build has the extra key; at its default it is not part of the identity.
        assert_eq!(Config::default().train.added_in_test, 0);
        let got: Vec<String> = PINNED.iter().map(|(sets, _)| format!("{:#010x}", identity_hash(&cfg(sets)))).collect();
        let want: Vec<String> = PINNED.iter().map(|(_, h)| format!("{h:#010x}")).collect();
        assert_eq!(got, want);
        assert!(PINNED.iter().all(|(sets, _)| !identity_text(&cfg(sets)).contains("added_in_test")));
        // Set away from its default, it is: the run is a different run.
        let mut c = cfg(PINNED[1].0);
        c.train.added_in_test = 3;
        assert!(identity_text(&c).contains("train.added_in_test = 3\n"));
        assert_ne!(identity_hash(&c), PINNED[1].1);
    }

    #[test]
    fn only_differences_from_the_defaults_in_sorted_order() {
        assert_eq!(identity_text(&Config::default()), "");
        // Setting a key to its default is the same run as leaving it out.
        assert_eq!(identity_text(&cfg(&["train.lr=0.1", "probe.at_init=true"])), "");
        let t = identity_text(&cfg(&["train.lr=0.05", "model.depth=3", "data.dataset=cifar10", "model.arch=conv"]));
        assert_eq!(t, "data.dataset = \"cifar10\"\nmodel.arch = \"conv\"\nmodel.depth = 3\ntrain.lr = 0.05\n");
        // The order keys are given in does not matter.
        let a = cfg(&["train.seed=3", "corruption.p=0.2"]);
        let b = cfg(&["corruption.p=0.2", "train.seed=3"]);
        assert_eq!(identity_hash(&a), identity_hash(&b));
        // Any difference does.
        assert_ne!(identity_hash(&a), identity_hash(&cfg(&["train.seed=3", "corruption.p=0.25"])));
        assert_ne!(identity_hash(&cfg(&["train.milestones=[5]"])), identity_hash(&cfg(&["train.milestones=[]"])));
        // Values skipped when written at their default (precision, graph) count when set.
        assert_eq!(identity_text(&cfg(&["train.precision=\"bf16\""])), "train.precision = \"bf16\"\n");
        // Where a run reports ([log]) is not what it is: no id moves.
        let logged = cfg(&["train.seed=3", "corruption.p=0.2", "log.tensorboard=\"tb\""]);
        assert_eq!(identity_hash(&logged), identity_hash(&a));
        // And a config with no [log] is written without the section, as older builds wrote it.
        assert!(!Config::default().to_toml().contains("[log]"));
        assert!(logged.to_toml().contains("[log]\ntensorboard = \"tb\""));
    }

    #[test]
    fn canonical_values() {
        let v: toml::Table = toml::from_str("a = 5e-4\nb = [1, 2]\nc = 'x\"y'\nd = { z = 1, a = 2.0 }\n").unwrap();
        assert_eq!(canonical(&v["a"]), "0.0005");
        assert_eq!(canonical(&v["b"]), "[1, 2]");
        assert_eq!(canonical(&v["c"]), "\"x\\\"y\"");
        assert_eq!(canonical(&v["d"]), "{a = 2.0, z = 1}");
        // FNV-1a's published test vector.
        assert_eq!(fnv1a(b"a"), 0xaf63dc4c8601ec8c);
    }
}
