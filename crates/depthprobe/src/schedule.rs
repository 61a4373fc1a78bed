//! Learning-rate schedule (docs/method.md, "Training protocol"): linear per-iteration warm-up over
//! the first epochs, then MultiStepLR (×γ at each milestone epoch).

use depthprobe_config::TrainConfig;

/// LR for iteration `iter` (0-based) of `epoch` (1-based) with `iters` iterations per epoch.
/// Warm-up ramps linearly to the base LR, reaching it on the last warm-up iteration (the
/// published code's scheduler starts at 0 and wastes one step; we start at base/(warm·iters)).
pub fn lr_at(t: &TrainConfig, epoch: usize, iter: usize, iters: usize) -> f64 {
    if epoch <= t.warmup_epochs {
        let done = (epoch - 1) * iters + iter + 1;
        return t.lr * done as f64 / (t.warmup_epochs * iters) as f64;
    }
    let drops = t.milestones.iter().filter(|&&m| epoch >= m).count();
    t.lr * t.gamma.powi(drops as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paper_schedule_values_per_epoch() {
        let t = TrainConfig::default();
        let close = |a: f64, b: f64| (a - b).abs() < 1e-15;
        // Epoch 1: linear warm-up over its 100 iterations.
        assert!(close(lr_at(&t, 1, 0, 100), 0.001));
        assert!(close(lr_at(&t, 1, 49, 100), 0.05));
        assert!(close(lr_at(&t, 1, 99, 100), 0.1));
        // The closed form: 0.1 to epoch 59, then 0.02, 0.004 and from epoch 200 on 0.0008.
        for (epoch, want) in
            [(2, 0.1), (59, 0.1), (60, 0.02), (99, 0.02), (100, 0.004), (199, 0.004), (200, 0.0008), (500, 0.0008)]
        {
            assert!(close(lr_at(&t, epoch, 0, 100), want), "epoch {epoch}: {} vs {want}", lr_at(&t, epoch, 0, 100));
            assert!(close(lr_at(&t, epoch, 99, 100), want));
        }
    }

    #[test]
    fn no_warmup_starts_at_base() {
        let t = TrainConfig { warmup_epochs: 0, milestones: vec![2], gamma: 0.5, ..TrainConfig::default() };
        assert_eq!(lr_at(&t, 1, 0, 10), 0.1);
        assert_eq!(lr_at(&t, 2, 0, 10), 0.05);
    }
}
