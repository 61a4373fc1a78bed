//! What the CLI prints about a probe: the per-layer table and the network's own numbers.

use std::fmt::Write as _;

use depthprobe_measures::ProbeResult;
use depthprobe_runfolder::Summary;

fn fmt_opt(v: Option<f64>, prec: usize) -> String {
    match v {
        None => "-".into(),
        Some(x) if x.is_infinite() => "inf".into(),
        Some(x) if x != 0.0 && (x.abs() >= 1e4 || x.abs() < 1e-3) => {
            format!("{x:.prec$e}", prec = prec.saturating_sub(1))
        }
        Some(x) => format!("{x:.prec$}"),
    }
}

/// The concise per-layer table printed to the terminal.
pub fn table(res: &ProbeResult) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:>5} {:>6} {:>9} {:>9} {:>10} {:>10} {:>10} {:>10}",
        "layer", "dim", "NCC train", "NCC test", "CDNV train", "CDNV test", "NC1", "fuzziness"
    );
    for l in &res.layers {
        let _ = writeln!(
            s,
            "{:>5} {:>6} {:>9} {:>9} {:>10} {:>10} {:>10} {:>10}",
            l.layer,
            l.dim,
            fmt_opt(Some(l.ncc_train_acc), 4),
            fmt_opt(l.ncc_test_acc, 4),
            fmt_opt(l.cdnv_train, 4),
            fmt_opt(l.cdnv_test, 4),
            fmt_opt(l.nc1, 4),
            fmt_opt(l.fuzziness, 4),
        );
    }
    let depths: Vec<String> = res
        .effective_depth
        .iter()
        .map(|(e, d)| format!("ε={e}: {}", d.map(|d| d.to_string()).unwrap_or_else(|| "not separable".into())))
        .collect();
    let _ = writeln!(s, "effective depth (of {} layers): {}", res.layers.len(), depths.join(", "));
    s
}

/// The network line under the table of a trained run.
pub fn network_line(summary: &Summary) -> String {
    let f = |v: Option<f64>| v.filter(|v| v.is_finite()).map(|v| format!("{v:.4}")).unwrap_or_else(|| "-".into());
    let n = summary.network;
    format!(
        "network: train acc {} · test acc {} · train loss {} · test loss {}",
        f(n.map(|n| n.train_acc)),
        f(n.map(|n| n.test_acc)),
        f(n.map(|n| n.train_loss)),
        f(n.map(|n| n.test_loss))
    )
}
