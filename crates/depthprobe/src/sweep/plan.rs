//! Sweep files and plans. A sweep file is a base run config plus axes (any config key) expanded
//! as a grid, optionally with the comparative bound's run families (`bound.rs`). Planning writes
//! one resolved config per run under a stable id: the axis values plus a hash of what makes the
//! run different (its keys away from their defaults: `depthprobe_config::identity_hash`), so
//! replanning the same file gives the same ids, a changed config a new one, and a key added to
//! the schema with its default none. Planning into a folder planned before keeps the ids it
//! already gave to runs whose config is unchanged, whatever build planned them (`reconcile`).
//!
//! ```toml
//! name = "depth-mnist"                       # default: the file's stem
//! base = "../../configs/quick/mlp-mnist.toml" # optional, relative to this file
//! [config]                                   # optional overrides, laid out like a run config
//! train.epochs = 20
//! [axes]                                     # grid, first axis outermost
//! "model.depth" = [2, 4, 8]
//! [zip]                                      # optional: keys that move together, one axis
//! "train.seed" = [0, 1, 2]                   # innermost: run i of each grid point takes
//! "corruption.seed" = [100, 101, 102]        # the i-th value of every list
//! [bound]                                    # optional: the bound's clean and noisy runs
//! clean_seeds = 4
//! noisy_draws = 4
//! p = [0.05, 0.1]
//! alpha = 0.1
//! eps = 0.01
//! ```

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use depthprobe_config::{check_key, identity_hash, identity_text, set_key, Config};
use depthprobe_runfolder::{json_text, write_all_atomic, write_atomic};
use depthprobe_sweep::runner::{run_status, RunStatus};

pub use depthprobe_sweep::plan::{BoundSpec, Plan, PlannedRun, Role, SweepDir, CHILD_ENV, PLAN_FORMAT};

use crate::bound;

/// The sweep file's top level.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SweepFile {
    name: Option<String>,
    base: Option<String>,
    #[serde(default)]
    config: toml::Table,
    #[serde(default)]
    axes: toml::Table,
    /// Keys whose lists move together (equal lengths): one axis, inside the grid.
    #[serde(default)]
    zip: toml::Table,
    bound: Option<BoundSpec>,
}

/// Deep-merge `over` into `base` (sections merge key by key).
fn merge(base: &mut toml::Table, over: &toml::Table) {
    for (k, v) in over {
        match (base.get_mut(k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            _ => {
                base.insert(k.clone(), v.clone());
            }
        }
    }
}

/// An axis value as text (strings without quotes).
pub fn value_text(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub(crate) fn sanitize(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' { c } else { '_' }).collect()
}

/// Short labels for the axes: the key's last part, or the whole key where two axes share it.
fn axis_labels(axes: &[String]) -> Vec<String> {
    let last = |k: &str| k.rsplit('.').next().unwrap_or(k).to_string();
    axes.iter()
        .map(|k| {
            let l = last(k);
            if axes.iter().filter(|o| last(o) == l).count() > 1 {
                k.replace('.', "-")
            } else {
                l
            }
        })
        .collect()
}

/// Expand a sweep file into its runs (nothing written).
pub fn expand(sweep_path: &Path) -> Result<(Plan, Vec<Config>)> {
    expand_with(sweep_path, &[])
}

/// `expand`, with `sets` (`key=value`, as `train --set`) applied to every run's config on top
/// of the sweep file's [config]; a key that is an axis or set by the bound is refused.
pub fn expand_with(sweep_path: &Path, sets: &[String]) -> Result<(Plan, Vec<Config>)> {
    let origin = sweep_path.display().to_string();
    let text = std::fs::read_to_string(sweep_path).with_context(|| format!("{origin}: cannot read sweep file"))?;
    let file: SweepFile = toml::from_str(&text).map_err(|e| anyhow::anyhow!("{origin}: invalid sweep file: {e}"))?;
    let mut base = match &file.base {
        Some(b) => {
            let p = sweep_path.parent().unwrap_or(Path::new(".")).join(b);
            let t = std::fs::read_to_string(&p)
                .with_context(|| format!("{origin}: base = '{b}': cannot read {}", p.display()))?;
            toml::from_str::<toml::Table>(&t).map_err(|e| anyhow::anyhow!("{}: invalid TOML: {e}", p.display()))?
        }
        None => toml::Table::new(),
    };
    merge(&mut base, &file.config);
    for set in sets {
        let key = set.split_once('=').map_or(set.as_str(), |(k, _)| k.trim());
        for (section, keys) in [("axes", &file.axes), ("zip", &file.zip)] {
            if keys.contains_key(key) {
                bail!("--set '{set}': '{key}' is an axis of {origin}; change its [{section}] list instead");
            }
        }
    }
    depthprobe_config::apply_sets(&mut base, sets)?;
    let base_cfg = Config::from_table(base.clone(), &format!("{origin} (base config)"))?;

    let lists = |section: &str, table: &toml::Table| -> Result<Vec<(String, Vec<toml::Value>)>> {
        let mut out = Vec::new();
        for (k, v) in table {
            check_key(k, &format!("{origin}: [{section}]"))?;
            let toml::Value::Array(list) = v else {
                bail!("{origin}: [{section}] '{k}' must be a list of values, e.g. \"{k}\" = [1, 2]");
            };
            if list.is_empty() {
                bail!("{origin}: [{section}] '{k}' is an empty list");
            }
            out.push((k.clone(), list.clone()));
        }
        Ok(out)
    };
    let grid = lists("axes", &file.axes)?;
    let zipped = lists("zip", &file.zip)?;
    if let Some((k, _)) = zipped.iter().find(|(k, _)| file.axes.contains_key(k)) {
        bail!("{origin}: '{k}' is in both [axes] and [zip]; a key is one or the other");
    }
    if let Some((k0, v0)) = zipped.first() {
        if let Some((k, v)) = zipped.iter().find(|(_, v)| v.len() != v0.len()) {
            bail!(
                "{origin}: [zip] lists move together and must have one length: '{k0}' has {}, '{k}' has {}",
                v0.len(),
                v.len()
            );
        }
    }
    let axes: Vec<String> = grid.iter().chain(&zipped).map(|(k, _)| k.clone()).collect();
    if let Some(b) = &file.bound {
        bound::validate(b, &base_cfg, &axes, &origin)?;
    }

    // The grid, first axis outermost; the zipped keys, together, innermost.
    let mut points: Vec<Vec<(String, toml::Value)>> = vec![Vec::new()];
    for (k, vs) in &grid {
        points = points
            .into_iter()
            .flat_map(|p| {
                vs.iter().map(move |v| {
                    let mut q = p.clone();
                    q.push((k.clone(), v.clone()));
                    q
                })
            })
            .collect();
    }
    if let Some((_, first)) = zipped.first() {
        points = points
            .into_iter()
            .flat_map(|p| {
                let zipped = &zipped;
                (0..first.len()).map(move |i| {
                    let mut q = p.clone();
                    q.extend(zipped.iter().map(|(k, vs)| (k.clone(), vs[i].clone())));
                    q
                })
            })
            .collect();
    }
    let roles: Vec<Role> = match &file.bound {
        None => vec![Role::Grid],
        Some(b) => (0..b.clean_seeds)
            .map(|seed| Role::Clean { seed })
            .chain(b.p.iter().flat_map(|&p| (0..b.noisy_draws).map(move |draw| Role::Noisy { p, draw })))
            .collect(),
    };
    let labels = axis_labels(&axes);
    let mut runs = Vec::new();
    let mut configs = Vec::new();
    for point in &points {
        for role in &roles {
            let mut t = base.clone();
            for (k, v) in point {
                set_key(&mut t, k, v.clone())?;
            }
            let mut slug: Vec<String> =
                labels.iter().zip(point).map(|(l, (_, v))| sanitize(&format!("{l}{}", value_text(v)))).collect();
            if let Some(label) = bound::apply_role(&mut t, role, &base_cfg)? {
                slug.push(sanitize(&label));
            }
            let what = format!("{origin}: run {}", slug.join(" "));
            let cfg = Config::from_table(t, &what)?;
            slug.push(format!("{:08x}", identity_hash(&cfg)));
            runs.push(PlannedRun { index: runs.len(), id: slug.join("-"), values: point.clone(), role: *role });
            configs.push(cfg);
        }
    }
    for (i, a) in runs.iter().enumerate() {
        if let Some(b) = runs[..i].iter().find(|b| b.id == a.id) {
            bail!(
                "{origin}: runs {} and {} would be identical (id {}); remove the repeated axis value",
                b.index,
                a.index,
                a.id
            );
        }
    }
    let name = file.name.clone().unwrap_or_else(|| {
        sweep_path.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_else(|| "sweep".into())
    });
    Ok((Plan { format: PLAN_FORMAT.into(), name, axes, bound: file.bound, runs }, configs))
}

/// What a plan found in the folder it was planned into.
#[derive(Debug, Default)]
pub struct Existing {
    /// Runs of the new plan that the folder's earlier plan already had, with where they stand.
    pub have: Vec<(usize, RunStatus)>,
    /// Runs that keep the id an earlier plan gave them (a build with another id rule): (index,
    /// the id this build would give, the id kept).
    pub kept: Vec<(usize, String, String)>,
    /// Ids of the earlier plan that this one does not have; their folders are left alone.
    pub dropped: Vec<String>,
}

impl Existing {
    /// What `sweep plan` says about the folder (nothing for a new folder).
    pub fn describe(&self, plan: &Plan, dir: &Path) -> String {
        let mut s = String::new();
        if !self.have.is_empty() {
            let count = |l: &str| self.have.iter().filter(|(_, st)| st.label() == l).count();
            let _ = writeln!(
                s,
                "{} already has {} of these {} runs: {} done, {} interrupted (they resume), {} failed (they rerun), \
                 {} running, {} not started",
                dir.display(),
                self.have.len(),
                plan.runs.len(),
                count("done"),
                count("interrupted"),
                count("failed"),
                count("running"),
                count("pending")
            );
            // Which ones, by state (a few of each; `--dry-run --out` lists every run).
            for label in ["done", "interrupted", "failed", "running", "pending"] {
                let ids: Vec<&str> = self
                    .have
                    .iter()
                    .filter(|(_, st)| st.label() == label)
                    .map(|(i, _)| plan.runs[*i].id.as_str())
                    .collect();
                if ids.is_empty() {
                    continue;
                }
                let more = if ids.len() > 8 { format!(" and {} more", ids.len() - 8) } else { String::new() };
                let _ = writeln!(s, "  {label}: {}{more}", ids[..ids.len().min(8)].join(", "));
            }
        }
        if !self.kept.is_empty() {
            let _ = writeln!(
                s,
                "{} runs keep the ids an earlier build gave them (their configs are unchanged), e.g. {} (this build: {})",
                self.kept.len(),
                self.kept[0].2,
                self.kept[0].1
            );
        }
        if !self.dropped.is_empty() {
            let _ = writeln!(
                s,
                "{} runs of the earlier plan are not in this one; their folders stay in {}: {}",
                self.dropped.len(),
                dir.join("runs").display(),
                self.dropped.join(", ")
            );
        }
        s
    }
}

/// Match the new plan against the folder's earlier plan, if it has one: a run whose config equals
/// an earlier run's keeps that run's id (so an upgrade that changed the id rule trains nothing
/// twice), and a run whose id is already there with another config is refused, since the folder's
/// results would be taken for it.
pub fn reconcile(out: &Path, plan: &mut Plan, configs: &[Config]) -> Result<Existing> {
    let dir = SweepDir(out.to_path_buf());
    if !dir.plan_path().exists() {
        return Ok(Existing::default());
    }
    let old = dir.read_plan().with_context(|| format!("{}: plan into a new folder", out.display()))?;
    // An earlier config that no longer parses (a key since removed) cannot match any new run.
    let old_cfgs: Vec<Option<Config>> = old.runs.iter().map(|r| dir.run_config(&r.id).ok()).collect();
    let mut claimed = vec![false; old.runs.len()];
    let mut ex = Existing::default();
    for (r, cfg) in plan.runs.iter_mut().zip(configs) {
        if let Some(j) = old.runs.iter().position(|o| o.id == r.id) {
            if let Some(was) = &old_cfgs[j] {
                if was != cfg {
                    bail!(
                        "{}: run {} is already planned there with another config ({}); its results would be \
                         taken for this one's. A default may have changed since it was planned: plan into a new folder",
                        out.display(),
                        r.id,
                        config_difference(was, cfg)
                    );
                }
            }
            claimed[j] = true;
        } else if let Some(j) = (0..old.runs.len()).find(|&j| !claimed[j] && old_cfgs[j].as_ref() == Some(cfg)) {
            claimed[j] = true;
            ex.kept.push((r.index, r.id.clone(), old.runs[j].id.clone()));
            r.id = old.runs[j].id.clone();
        } else {
            continue;
        }
        ex.have.push((r.index, run_status(&dir, r)?));
    }
    ex.dropped = old.runs.iter().zip(&claimed).filter(|(_, c)| !**c).map(|(o, _)| o.id.clone()).collect();
    for (i, a) in plan.runs.iter().enumerate() {
        if plan.runs[..i].iter().any(|b| b.id == a.id) {
            bail!("{}: two runs of the new plan would share the id {}; plan into a new folder", out.display(), a.id);
        }
    }
    Ok(ex)
}

/// The keys on which two configs differ, as `key: a → b`.
fn config_difference(a: &Config, b: &Config) -> String {
    let lines = |c: &Config| identity_text(c).lines().map(str::to_string).collect::<Vec<_>>();
    let (la, lb) = (lines(a), lines(b));
    let key = |l: &str| l.split(" = ").next().unwrap_or("").to_string();
    let value = |ls: &[String], k: &str| {
        ls.iter().find(|l| key(l) == k).map_or("the default".to_string(), |l| l[k.len() + 3..].to_string())
    };
    let mut keys: Vec<String> =
        la.iter().chain(&lb).filter(|l| !la.contains(l) || !lb.contains(l)).map(|l| key(l)).collect();
    keys.sort();
    keys.dedup();
    keys.iter().map(|k| format!("{k}: {} → {}", value(&la, k), value(&lb, k))).collect::<Vec<_>>().join(", ")
}

/// Write the plan into `out`: plan.json, configs/<id>.toml and a copy of the sweep file.
/// Runs already in `out` keep their results: a run whose config is unchanged keeps its id, even
/// one an older build planned (`reconcile`).
pub fn write_plan(sweep_path: &Path, out: &Path, sets: &[String]) -> Result<(Plan, Existing)> {
    let (mut plan, configs) = expand_with(sweep_path, sets)?;
    let existing = reconcile(out, &mut plan, &configs)?;
    let dir = SweepDir(out.to_path_buf());
    std::fs::create_dir_all(out.join("configs")).with_context(|| format!("{}: cannot create", out.display()))?;
    let mut files: Vec<(PathBuf, Vec<u8>)> =
        plan.runs.iter().zip(&configs).map(|(r, c)| (dir.config_path(&r.id), c.to_toml().into_bytes())).collect();
    let mut src = std::fs::read(sweep_path)?;
    if !sets.is_empty() {
        // The copy says what the configs in configs/ also have.
        let note: String = sets.iter().map(|s| format!("# planned with --set {s}\n")).collect();
        src.splice(0..0, note.into_bytes());
    }
    files.push((out.join("sweep.toml"), src));
    write_all_atomic(&files)?;
    // The plan last: a folder with plan.json always has every config it names.
    write_atomic(&dir.plan_path(), json_text(&plan)?.as_bytes())?;
    Ok((plan, existing))
}

/// One line per run, for `sweep plan --dry-run`: its index, id and, for a run the folder
/// already has, where it stands.
pub fn describe(plan: &Plan, existing: &Existing) -> String {
    let mut s = String::new();
    for r in &plan.runs {
        let st = existing.have.iter().find(|(i, _)| *i == r.index).map(|(_, st)| format!("  ({})", st.label()));
        let _ = writeln!(s, "{:>4}  {}{}", r.index, r.id, st.unwrap_or_default());
    }
    s
}
